"""``asyncrl bench throughput``: environment steps/s of real training, per algorithm and thread count."""

import click

from numba_a3c.cli.bench_options import (
    algos_and_threads,
    check_env,
    check_plot,
    common_options,
    finish,
    progress_printer,
    run_bench,
)
from numba_a3c.cli.errors import BadInput


@click.command(short_help="Environment steps/s per algorithm and thread count.")
@algos_and_threads
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="runs per cell; the table shows their median")
@click.option("--warmup", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="seconds of each run discarded before measuring (thread start, caches)")
@click.option("--duration", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="seconds measured in each run")
@click.option("--env-processes", "env_processes", type=click.Choice(["auto", "off", "on", "both"]), default="auto",
              show_default=True,
              help="where the workers of a Python environment run: auto (as asyncrl train does), off (threads of "
                   "this process), on (a process each) or both, side by side")
@click.option("--preset", default="", metavar="NAME",
              help="measure with this preset, as asyncrl train --preset (e.g. atari-lstm against atari on Pong) "
                   "[default: the environment's own]")
@common_options
def throughput(algos, threads, repeats, warmup, duration, env_processes, preset, env, gym, as_json, plot_path,
               quiet):
    """Environment steps/s of real training for each algorithm and thread count.

    Each cell runs the trainer that `asyncrl train` uses (the environment's preset, no
    evaluation, no files), compiles first, discards --warmup seconds, then counts global steps
    (summed over threads) for --duration seconds; the median of --repeats runs is shown, with
    the speed-up over 1 thread. Rows with more threads than cores are marked. On the default
    native CartPole-v1 the report ends with issue 3's throughput targets.

    \b
    Examples:
      asyncrl bench throughput --threads 1,2,16
      asyncrl bench throughput --algos a3c --gym --threads 1,2   # a Python env holds the GIL
      asyncrl bench throughput --algos a3c --env LunarLander-v3 --threads 1,2,16 --env-processes both
      asyncrl bench throughput --algos a3c --env ALE/Pong-v5 --threads 16 --preset atari-lstm
    """
    from numba_a3c.benchmarks import throughput as bench

    info = check_env(env, gym, algos)
    if env_processes in ("on", "both") and info.kind == "native":
        raise BadInput(f"--env-processes {env_processes}: {env} is a native (Numba) environment, which never holds "
                       f"the GIL; add --gym to measure gymnasium's")
    check_plot(plot_path)
    result = run_bench(bench, algos=algos, threads=threads, env=env, gym=gym, repeats=repeats, warmup=warmup,
                       duration=duration, progress=progress_printer(not quiet), env_processes=env_processes,
                       preset=preset)
    finish(result, bench, as_json, plot_path)
