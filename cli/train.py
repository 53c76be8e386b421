"""``asyncrl train``: train an agent with one of the four asynchronous methods."""

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import click

from numba_a3c.config import TrainConfig, resolve


def _config_options(func):
    """Add one click option per TrainConfig field (defaults None: presets fill what is not given)."""
    for f in reversed(dataclasses.fields(TrainConfig)):
        name = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default
        if f.type is bool or isinstance(default, bool):
            opt = click.option(f"{name}/--no-{f.name.replace('_', '-')}", f.name, default=None,
                               help=f"{help_text} [default: preset or {default}]")
        elif f.name == "hidden":
            opt = click.option(name, f.name, default=None, metavar="N[,N...]",
                               help=f"{help_text} [default: preset or {','.join(map(str, default))}]",
                               callback=_parse_hidden)
        elif "choices" in f.metadata:
            opt = click.option(name, f.name, type=click.Choice(f.metadata["choices"]), default=None,
                               help=f"{help_text} [default: preset or {default}]")
        else:
            typ = type(default)
            opt = click.option(name, f.name, type=typ, default=None, help=f"{help_text} [default: preset or {default}]")
        func = opt(func)
    return func


def _parse_hidden(ctx, param, value):
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 64,64") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("hidden sizes must be positive integers, e.g. 64,64")
    return sizes


def _fmt_num(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def print_config(config):
    d = config.to_dict()
    click.echo("configuration: " + " ".join(f"{k}={v}" for k, v in d.items()))


def progress_line(p):
    pct = 100.0 * p.steps / p.budget if p.budget else 0.0
    parts = [f"step {p.steps:>10,} ({pct:5.1f}%)", f"{p.steps_per_s:>9,.0f} steps/s", f"episodes {p.episodes:>7,}",
             f"return(100) {_fmt_num(p.recent_return):>7}"]
    if not math.isnan(p.epsilon):
        parts.append(f"eps {p.epsilon:.3f}")
    parts.append(f"lr {p.lr:.2e}")
    return "  ".join(parts)


@click.command()
@_config_options
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="run directory for the configuration, the log and the final parameters "
                   "[default: runs/<env>-<algo>-<time>]")
@click.option("--quiet", is_flag=True, help="no progress lines, only the summary")
def train(out, quiet, **options):
    """Train an agent. With no options: A3C on CartPole-v1 with the shipped preset.

    Every option not given comes from the preset for the environment and algorithm
    (data/presets); the resolved configuration is printed and saved in the run directory.
    """
    from numba_a3c.envs.registry import EnvError
    from numba_a3c.trainer import Trainer

    config = resolve(options)
    try:
        trainer = Trainer(config, on_progress=None if quiet else lambda p: click.echo(progress_line(p)),
                          on_eval=lambda ev: click.echo(
                              f"evaluation at step {ev.steps:,}: mean return {ev.mean:.2f} over {len(ev.returns)} "
                              f"episodes (min {ev.returns.min():.1f}, max {ev.returns.max():.1f})"))
    except (EnvError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    run_dir = Path(out) if out else Path("runs") / f"{config.env.replace('/', '_')}-{config.algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    print_config(config)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    net = trainer.network
    click.echo(f"network: {net.spec.heads} heads, {net.n_params:,} parameters; environment: {config.env} "
               f"({trainer.env_info.kind}); threads: {config.threads} on {os.cpu_count()} cores")
    t0 = time.monotonic()
    result = trainer.run()
    import numpy as np

    np.save(run_dir / "params.npy", trainer.shared.theta)
    click.echo(f"{result.status}: {result.steps:,} steps in {result.wall_time:.1f} s "
               f"({result.steps_per_s:,.0f} steps/s), {result.episodes:,} episodes, total time "
               f"{time.monotonic() - t0:.1f} s")
    if result.final_eval is not None:
        ev = result.final_eval
        click.echo(f"final greedy evaluation: mean return {ev.mean:.2f} ± {ev.returns.std():.2f} over "
                   f"{len(ev.returns)} episodes")
    click.echo(f"run directory: {run_dir}")
    if result.error:
        click.echo(f"error: {result.error}", err=True)
        sys.exit(1)
