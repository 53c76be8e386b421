"""``asyncrl bench atari``: Atari agent steps/s for 1, 2 and 16 threads, the time split of a step, memory."""

import json

import click

from numba_a3c.cli.bench_options import int_list
from numba_a3c.config import ALGORITHMS


@click.command("atari")
@click.option("--env", "env_id", default="ALE/Pong-v5", show_default=True, help="Atari game, ALE/<Game>-v5")
@click.option("--algo", default="a3c", show_default=True,
              type=click.Choice(ALGORITHMS), help="method to train")
@click.option("--threads", default="1,2,16", show_default=True, callback=int_list,
              help="worker thread counts to measure training throughput with")
@click.option("--seconds", default=20.0, show_default=True, type=click.FloatRange(min=1.0),
              help="measurement window per thread count (after the warm-up)")
@click.option("--warmup", default=5.0, show_default=True, type=click.FloatRange(min=0.0),
              help="seconds discarded after the workers start")
@click.option("--emulator-seconds", default=5.0, show_default=True, type=click.FloatRange(min=0.5),
              help="window of each emulator-only measurement (1 and 2 threads)")
@click.option("--breakdown-steps", default=2000, show_default=True, type=click.IntRange(min=0),
              help="agent steps timed piece by piece in one thread (0: skip)")
@click.option("--json", "as_json", is_flag=True,
              help="print the results as one JSON document on stdout (progress goes to stderr)")
def atari(env_id, algo, threads, seconds, warmup, emulator_seconds, breakdown_steps, as_json):
    """Atari throughput: agent steps/s of real training with each thread count, how one thread's step
    splits into emulator+preprocessing, forward, backward and update, the emulator's own scaling
    over threads (C++ vector env vs plain ALEInterface), and resident memory.

    One agent step is 4 emulator frames. The issue's target is the paper's whole-machine rate,
    926 agent steps/s; its memory target is 1.5 GB for 16 threads.
    """
    from numba_a3c.benchmarks import atari as bench
    from numba_a3c.benchmarks import report
    from numba_a3c.envs.base import EnvError
    from numba_a3c.envs.registry import describe_env

    try:
        describe_env(env_id)
    except EnvError as exc:
        raise click.BadParameter(str(exc), param_hint="--env") from None
    def say(line):
        click.echo(line, err=as_json)

    say(f"Atari benchmark: {algo} on {env_id}; training windows of {seconds:g} s after {warmup:g} s warm-up")
    res = bench.run(env_id, algo, threads, seconds=seconds, warmup=warmup, emulator_seconds=emulator_seconds,
                    breakdown_steps=breakdown_steps, on_line=say)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
        return
    cores = report.cores()
    click.echo(f"summary ({cores} cores):")
    for n, rate in res.training.items():
        verdict = "meets" if rate >= bench.TARGET_STEPS_PER_S else "below"
        cpu_ms = 1000 * res.training_cores[n] / max(rate, 1e-9)
        projected = min(n, cores) * 1000 / cpu_ms
        click.echo(f"  {n:2d} threads: {rate:7.0f} agent steps/s ({verdict} the {bench.TARGET_STEPS_PER_S} target)"
                   f", RSS {res.memory_mb[n]:.0f} MiB; {cpu_ms:.3f} CPU ms/step, so {projected:.0f} steps/s "
                   f"if the threads had {min(n, cores)} idle core(s)")
    if 16 in res.memory_mb:
        mem = res.memory_mb[16]
        verdict = "within" if mem <= bench.TARGET_RSS_MB_16_THREADS else "above"
        target = bench.TARGET_RSS_MB_16_THREADS
        click.echo(f"  memory with 16 threads: {mem:.0f} MiB ({verdict} the {target} MiB target)")
    vec = res.emulator.get("vector", {})
    if 1 in vec and 2 in vec:
        click.echo(f"  emulator scaling, 2 threads vs 1: vector env x{vec[2] / vec[1]:.2f}, "
                   f"plain ALEInterface x{res.emulator['ale'][2] / res.emulator['ale'][1]:.2f}")
