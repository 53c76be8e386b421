"""``asyncrl inspect``: look inside a checkpoint."""

import json

import click

from numba_a3c.cli.errors import BadInput


@click.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="print the summary (or the --layer values) as JSON")
@click.option("--layer", "layer", metavar="NAME", default=None,
              help="print every value of one layer (fc1) or tensor (fc1/W); target/NAME reads the target network")
@click.option("--plot", "plot", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE.png",
              help="also draw the learning curve to this image (needs the 'plot' extra: matplotlib)")
@click.option("--bins", type=click.IntRange(1, 500), default=20, show_default=True,
              help="bins of the global step in the text learning curve")
@click.option("--evaluations", "last_evals", type=click.IntRange(0), default=5, show_default=True,
              help="how many of the last evaluations to show")
@click.option("--health", is_flag=True,
              help="play the policy for --health-steps steps and measure, on those frames, dead and active ReLU units "
                   "per layer, activation scales, the policy's entropy, the value error and gradient and RMSProp "
                   "scales per tensor: is the run learning or dead?")
@click.option("--health-steps", type=click.IntRange(2, 100_000), default=400, show_default=True,
              help="steps played for --health")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the steps played for --health")
def inspect(path, as_json, layer, plot, bins, last_evals, health, health_steps, seed):
    """Summarize the checkpoint PATH: configuration, progress, layers, optimizer, learning curve
    (or, with --health, measure how alive its network is on frames its policy plays).

    PATH is a checkpoint (.h5), a run directory (its latest.h5 is read) or the name of a
    shipped checkpoint, e.g. CartPole-v1-a3c or Catch-v0-a3c.
    """
    from numba_a3c import checkpoint
    from numba_a3c.checkpoint import CheckpointError
    from numba_a3c.inspection import (
        InspectError,
        find_checkpoint,
        format_summary,
        format_values,
        layer_values,
        plot_learning_curve,
        require,
        summarize,
    )
    from numba_a3c.validation import ConfigError, check_output_file

    try:
        if plot:
            check_output_file("--plot", plot)   # the same message with or without the extra
            require("matplotlib", "plot")   # fail before any work when the extra is missing
        file = find_checkpoint(path)
        ckpt = checkpoint.load(file)
        if health:
            from numba_a3c.diagnostics import checkpoint_health, format_health

            report = checkpoint_health(ckpt, steps=health_steps, seed=seed)
            click.echo(json.dumps(report, indent=2) if as_json else format_health(report))
        elif layer is not None:
            values = layer_values(ckpt, layer)
            if as_json:
                click.echo(json.dumps({name: dict(shape=list(a.shape), values=a.tolist())
                                       for name, a in values.items()}))
            else:
                click.echo(format_values(values))
        else:
            summary = summarize(ckpt, file, bins=bins, last_evaluations=last_evals)
            click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))
        if plot:
            plot_learning_curve(ckpt, plot)
            click.echo(f"learning curve written to {plot}", err=as_json)
    except (CheckpointError, InspectError, ConfigError) as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or plot}: {exc.strerror or exc}") from None
