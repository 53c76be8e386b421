"""``asyncrl eval``: play episodes with a saved policy."""

import json
import time

import click

from numba_a3c.cli.errors import BadInput
from numba_a3c.cli.train import split_env_kwargs


@click.command("eval")
@click.argument("path")
@click.option("--episodes", "-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="number of episodes")
@click.option("--epsilon", type=click.FloatRange(0.0, 1.0), default=None,
              help="ε-greedy: a random action with probability ε [default: greedy]")
@click.option("--stochastic", is_flag=True,
              help="sample actions from the policy π (A3C checkpoints; a Gaussian policy: a ~ N(μ, σ²), not μ)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the environments and of exploration")
@click.option("--max-steps", type=click.IntRange(min=0), default=0,
              help="cap each episode at this many steps [default: the environment's own limit]")
@click.option("--env-kwargs", "env_kwargs", multiple=True, metavar="KEY=VALUE", callback=split_env_kwargs,
              help="change a setting of the environment the agent trained on, or add one (repeat it or separate "
                   "items with commas), e.g. repeat_action_probability=0.25 to play an Atari agent with sticky "
                   "actions [default: the run's own --env-kwargs]")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
@click.option("--record", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE.gif",
              help="write the first episode as an animated GIF, in colour for Atari (needs the 'record' extra: "
                   "pillow)")
@click.option("--fps", type=click.IntRange(1, 100), default=None,
              help="frames per second of --record [default: the game's pace for Atari, 15 (60 Hz, 4 frames a "
                   "step); else 30]")
def eval_(path, episodes, epsilon, stochastic, seed, max_steps, env_kwargs, as_json, record, fps):
    """Evaluate the policy saved in PATH: greedy by default, ε-greedy or stochastic.

    PATH is a checkpoint (.h5), a run directory (its latest.h5) or the name of a shipped
    checkpoint, e.g. CartPole-v1-a3c or Catch-v0-a3c. Prints each episode's return and length,
    then the mean and standard deviation.
    """
    from numba_a3c import checkpoint
    from numba_a3c.checkpoint import CheckpointError
    from numba_a3c.envs.base import EnvError
    from numba_a3c.inspection import (
        InspectError,
        evaluate_checkpoint,
        evaluation_result,
        find_checkpoint,
        recording_fps,
        require,
        with_env_kwargs,
        write_gif,
    )
    from numba_a3c.validation import ConfigError, check_output_file

    if stochastic and epsilon is not None:
        raise BadInput("--stochastic and --epsilon exclude each other: sample π, or act ε-greedily")
    mode = "stochastic" if stochastic else "epsilon" if epsilon is not None else "greedy"
    try:
        if record:
            check_output_file("--record", record)   # the same message with or without the extra
            require("PIL.Image", "record")
        file = find_checkpoint(path)
        ckpt = checkpoint.load(file)
        if stochastic and ckpt.spec.heads == "q":
            raise BadInput(f"--stochastic samples the policy π, but this {ckpt.config.algo} checkpoint has "
                           f"Q values only; use --epsilon E")
        if env_kwargs:
            ckpt.config = with_env_kwargs(ckpt.config, env_kwargs)
        cfg = ckpt.config
        policy = {"greedy": "greedy", "stochastic": "stochastic (a ~ π)"}.get(mode) or f"ε-greedy (ε={epsilon:g})"
        if ckpt.spec.heads == "gaussian" and mode != "epsilon":
            policy = "greedy (the mean action μ)" if mode == "greedy" else "stochastic (a ~ N(μ, σ²))"

        def on_episode(e, r, n):
            if as_json:
                return
            if e == 0:   # printed once the first episode is over, so an early error stays one line
                settings = f" ({', '.join(cfg.env_kwargs)})" if cfg.env_kwargs else ""
                click.echo(f"{file}: {cfg.algo} on {cfg.env}{settings} after {ckpt.global_step:,} steps; {policy} "
                           f"policy, seed {seed}")
            click.echo(f"  episode {e + 1:>4}: return {r:10.2f}  length {n:>6,}")

        t0 = time.monotonic()
        returns, lengths, frames = evaluate_checkpoint(ckpt, episodes=episodes, mode=mode, epsilon=epsilon or 0.0,
                                                       seed=seed, max_steps=max_steps, record=bool(record),
                                                       on_episode=on_episode)
        elapsed = time.monotonic() - t0
        if record:
            write_gif(frames, record, fps=fps or recording_fps(cfg.env))
    except (CheckpointError, InspectError, EnvError, ConfigError) as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise BadInput(f"{exc.filename or record}: {exc.strerror or exc}") from None
    result = evaluation_result(file, ckpt, mode, epsilon, seed, returns, lengths, elapsed, record)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"mean return {result['mean']:.2f} ± {result['std']:.2f} (min {result['min']:.2f}, max "
               f"{result['max']:.2f}) over {episodes} episodes, mean length {result['mean_length']:.1f}; "
               f"{elapsed:.2f} s")
    if record:
        click.echo(f"recorded episode 1 ({len(frames)} frames, return {returns[0]:.2f}) to {record}")
