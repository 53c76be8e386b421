"""``asyncrl bench optimizers``: final score against learning rate for momentum SGD, RMSProp and shared RMSProp."""

import click

from numba_a3c.cli.bench_options import (
    check_env,
    check_plot,
    choice_list,
    common_options,
    finish,
    progress_printer,
    run_bench,
)
from numba_a3c.config import ALGORITHMS, OPTIMIZERS


@click.command(short_help="Final score vs learning rate per optimizer (robustness).")
@click.option("--algo", type=click.Choice(ALGORITHMS), default="a3c", show_default=True, help="algorithm to train")
@click.option("--optimizers", default=",".join(OPTIMIZERS), show_default=True, callback=choice_list(OPTIMIZERS),
              help="comma-separated optimizers to compare")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True,
              help="learning rates sampled per optimizer (the same ones for every optimizer)")
@click.option("--lr-low", type=click.FloatRange(min=0.0, min_open=True), default=1e-4, show_default=True,
              help="lower end of the LogUniform learning-rate range")
@click.option("--lr-high", type=click.FloatRange(min=0.0, min_open=True), default=1e-2, show_default=True,
              help="upper end of the LogUniform learning-rate range")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="seed of the learning-rate sample; run i also trains with seed + i")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="threads per run")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="step budget per run [default: the preset's, as in asyncrl train]")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=10, show_default=True,
              help="greedy episodes of the final evaluation (the run's score)")
@click.option("--threshold", type=float, default=None,
              help="score that counts as solved [default: 475 on CartPole-v1, -100 on Acrobot-v1, 0.8 on Catch-v0]")
@common_options
def optimizers(algo, optimizers, runs, lr_low, lr_high, seed, threads, steps, eval_episodes, threshold, env, gym,
               as_json, plot_path, quiet):
    """The paper's optimizer robustness: final score against a LogUniform learning rate.

    Samples --runs learning rates from LogUniform(--lr-low, --lr-high) and trains the algorithm
    once with each, for every optimizer (momentum SGD, RMSProp with per-thread statistics and
    shared RMSProp), with the environment's preset otherwise. Shows each run's final greedy score
    against its learning rate, and per optimizer the runs that reached the threshold and the
    area under the sorted-score curve (the paper's robustness figure).

    \b
    Examples:
      asyncrl bench optimizers --runs 10
      asyncrl bench optimizers --algo nstep-q --plot optimizers.png
    """
    from numba_a3c.benchmarks import optimizers as bench

    if lr_low >= lr_high:
        raise click.BadParameter(f"must be below --lr-high ({lr_high:g})", param_hint="--lr-low")
    check_env(env, gym)
    check_plot(plot_path)
    result = run_bench(bench, algo=algo, env=env, optimizers=optimizers, runs=runs, lr_low=lr_low, lr_high=lr_high,
                       seed=seed, threads=threads, steps=steps, eval_episodes=eval_episodes, threshold=threshold,
                       gym=gym, progress=progress_printer(not quiet))
    finish(result, bench, as_json, plot_path)
