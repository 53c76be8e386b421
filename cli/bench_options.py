"""Options and output shared by the ``asyncrl bench`` commands (throughput, speedup, optimizers; atari's lists)."""

import json
from pathlib import Path

import click

from numba_a3c.cli.errors import BadInput


def int_list(ctx, param, value):
    """Parse "1,2,16" into (1, 2, 16): positive for thread counts, ≥ 0 for seeds."""
    if value is None:
        return None
    lowest = 0 if param.name == "seeds" else 1
    try:
        items = tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 1,2,16") from None
    if not items:
        raise click.BadParameter("give at least one value, e.g. 1,2,16")
    if min(items) < lowest:
        hint = ": use thread counts >= 1, e.g. 1,2,16" if param.name == "threads" else ""
        raise click.BadParameter(f"every value must be >= {lowest} (got {min(items)}){hint}")
    if len(set(items)) != len(items):
        raise click.BadParameter(f"{value!r} repeats a value")
    return items


def choice_list(choices):
    """A click callback parsing "a3c,sarsa" into a tuple, each item one of ``choices``."""
    def parse(ctx, param, value):
        if value is None:
            return None
        items = tuple(v.strip() for v in str(value).split(",") if v.strip())
        unknown = [v for v in items if v not in choices]
        if unknown or not items:
            raise click.BadParameter(f"{', '.join(unknown) or repr(value)}: expected a comma-separated list of "
                                     f"{', '.join(choices)}")
        return tuple(dict.fromkeys(items))
    return parse


def check_env(env, gym, algos=()):
    """Fail fast, with exit code 2, on an environment id the trainer cannot use (with ``algos``:
    a Box action space, which only A3C can act in)."""
    from numba_a3c.envs.base import EnvError
    from numba_a3c.envs.registry import describe_env

    try:
        info = describe_env(env, force_gym=gym)
    except EnvError as exc:
        raise BadInput(str(exc)) from None
    others = [a for a in algos if a != "a3c"]
    if info.continuous and others:
        raise BadInput(f"{env} has continuous (Box) actions; the Q methods ({', '.join(others)}) need discrete ones: "
                       f"give --algos a3c")
    return info


def check_plot(path):
    """Before a long benchmark: the plot's folder must exist and matplotlib must be importable.

    The folder is checked first: a wrong path is the same mistake with or without the optional
    extra installed, so it gets the same message on every machine."""
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise BadInput(f"--plot {path}: the folder {folder} does not exist; create it or choose another path")
    from numba_a3c.benchmarks.report import require_matplotlib

    try:
        require_matplotlib()
    except ImportError as exc:
        raise BadInput(str(exc)) from None


def run_bench(module, **kwargs):
    """``module.run(**kwargs)``; a configuration it refuses (before any work) becomes a usage error, exit code 2."""
    try:
        return module.run(**kwargs)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def progress_printer(enabled=True):
    """Progress lines go to stderr, so stdout holds only the report (or the JSON document)."""
    if not enabled:
        return None
    return lambda msg: click.echo(msg, err=True)


def finish(result, module, as_json, plot_path):
    """Print the report (text, or JSON with --json), then write the plot if asked."""
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo(module.format_result(result))
    if plot_path:
        module.plot(result, plot_path)
        click.echo(f"plot written to {plot_path}", err=True)


def algos_and_threads(func):
    """--algos (default: all four) and --threads (default 1,2,4,8,16), parsed into tuples."""
    from numba_a3c.config import ALGORITHMS

    func = click.option("--threads", default="1,2,4,8,16", show_default=True, callback=int_list, metavar="N[,N...]",
                        help="thread counts (include 1: the speed-ups are relative to it)")(func)
    return click.option("--algos", default=",".join(ALGORITHMS), show_default=True,
                        callback=choice_list(ALGORITHMS), help="comma-separated algorithms to measure")(func)


def common_options(func):
    """--env, --gym, --json, --plot and --quiet, in that order in --help."""
    for opt in reversed([
        click.option("--env", default="CartPole-v1", show_default=True,
                     help="environment id: a native one (CartPole-v1, Acrobot-v1, Catch-v0, Pendulum-v1) or any "
                          "gymnasium id with discrete actions (Box actions: --algos a3c)"),
        click.option("--gym", is_flag=True,
                     help="use the gymnasium (Python) environment even where a native one exists: shows what a "
                          "Python step, which holds the GIL, costs"),
        click.option("--json", "as_json", is_flag=True, help="print the results as one JSON document on stdout"),
        click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
                     help="also draw the results into this image (needs matplotlib: pip install 'numba_a3c[plot]')"),
        click.option("--quiet", is_flag=True, help="no progress lines on stderr"),
    ]):
        func = opt(func)
    return func
