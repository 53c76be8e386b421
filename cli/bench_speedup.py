"""``asyncrl bench speedup``: the paper's Table 2 measure, time to a reference score with n threads vs 1."""

import click

from numba_a3c.cli.bench_options import (
    algos_and_threads,
    check_env,
    check_plot,
    common_options,
    finish,
    int_list,
    progress_printer,
    run_bench,
)


@click.command(short_help="Paper Table 2: time to a reference score, n threads vs 1.")
@algos_and_threads
@click.option("--seeds", default="0,1,2,3,4", show_default=True, callback=int_list, metavar="S[,S...]",
              help="seeds; each (algorithm, threads) cell trains once per seed and reports the median time")
@click.option("--target", type=float, default=None,
              help="reference score [default: 475 on CartPole-v1, -100 on Acrobot-v1, 0.8 on Catch-v0]")
@click.option("--criterion", type=click.Choice(["eval", "train"]), default="eval", show_default=True,
              help="eval: a periodic greedy evaluation reaches the target; train: the mean return of the last "
                   "100 training episodes does")
@click.option("--eval-every", type=click.IntRange(min=1), default=5000, show_default=True,
              help="global steps between greedy evaluations (criterion eval): the time resolution")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=10, show_default=True,
              help="episodes per greedy evaluation")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="step budget per run [default: the preset's, as in asyncrl train]")
@click.option("--time-cap", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="seconds after which a run that has not reached the target stops ('not reached')")
@common_options
def speedup(algos, threads, seeds, target, criterion, eval_every, eval_episodes, steps, time_cap, env, gym,
            as_json, plot_path, quiet):
    """The paper's Table 2: wall-clock time to a reference score, 1 thread over n threads.

    Every (algorithm, threads, seed) trains with the environment's preset (as `asyncrl train`
    does) until the reference score is reached, the budget is spent or --time-cap passes; the
    time counts from the start of the workers (kernels already compiled). The speed-up is the
    median time with 1 thread over the median time with n threads, printed beside the paper's
    (data/reference/paper.json). A median that is not reached is shown as such.

    \b
    Examples:
      asyncrl bench speedup --threads 1,2,4 --seeds 0,1,2
      asyncrl bench speedup --criterion train --target 195
    """
    from numba_a3c.benchmarks import speedup as bench

    check_env(env, gym, algos)
    check_plot(plot_path)
    result = run_bench(bench, algos=algos, threads=threads, env=env, seeds=seeds, target=target, criterion=criterion,
                       eval_every=eval_every, eval_episodes=eval_episodes, steps=steps, time_cap=time_cap, gym=gym,
                       progress=progress_printer(not quiet))
    finish(result, bench, as_json, plot_path)
