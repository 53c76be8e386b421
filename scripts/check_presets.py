#!/usr/bin/env python
"""Check (or sweep) the shipped presets: does every method solve the environment on most seeds?

For each algorithm and each seed this trains one run with the preset for the environment
(``data/presets/<env>.json``), with any ``--set`` overrides on top, then reports the final greedy
evaluation (the mean return of the preset's ``eval_episodes`` episodes), whether it reached the
preset's ``solved`` threshold, and the wall time. A summary line per algorithm gives the pass
count. This is how the presets were chosen and how their claims are checked::

    python scripts/check_presets.py                                  # CartPole-v1, all four, 5 seeds
    python scripts/check_presets.py --env Catch-v0 --algos a3c --seeds 5
    python scripts/check_presets.py --algos nstep-q --set lr=0.002,0.003 --set steps=200000
    python scripts/check_presets.py --algos a3c --seeds 5 --cli      # wall time of a whole `asyncrl train`

Every ``--set KEY=V1[,V2...]`` with several values adds a dimension to a grid: each combination
is checked on every seed (a sweep). Values are JSON where they parse; list values are separated
by semicolons: ``--set 'hidden=[32];[64,64]'``. ``--cli`` runs each seed as its own ``asyncrl train --quiet``
process and times the whole process (Python start-up, imports, loading the cached kernels,
training and the final evaluation): that is the number behind "solves CartPole in N s". Without
it, runs share one process and the time is that of building the trainer, training and evaluating.

``--generic`` checks the other promise, that an environment learns with the generic defaults
(``data/presets/default.json``: no preset naming the environment) and nothing else. ``--env``
then takes a comma-separated list; each environment is trained with each algorithm on every seed,
and one table gives, per environment and algorithm, the seeds that reached the threshold
(``--threshold``, else gymnasium's ``reward_threshold`` for the id, else the environment's own
preset's ``solved``), the greedy mean of each seed and the wall time (``--set KEY=VALUE`` changes a
default, e.g. ``steps=1000`` for a smoke test; one value each, no sweep)::

    python scripts/check_presets.py --generic --env CartPole-v1,Acrobot-v1 --gym --algos a3c --seeds 3

The exit status is 0 when every algorithm (and grid point, or environment) passed on at least ``--need`` seeds.
"""

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from numba_a3c.config import ALGORITHMS as ALGOS


def parse_seeds(text):
    """``5`` means seeds 0..4; ``3,7,11`` means those seeds."""
    if "," in text:
        return [int(s) for s in text.split(",") if s]
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds needs a positive count or a comma-separated list")
    return list(range(n))


def parse_value(text):
    """A --set value as JSON where it parses (numbers, true/false, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(items):
    """``["lr=0.001,0.003", "hidden=[32]"]`` → ``{"lr": [0.001, 0.003], "hidden": [[32]]}``."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE[,VALUE...], e.g. --set lr=0.001,0.003")
        key, _, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if values.startswith("["):
            grid[key] = [parse_value(v) for v in values.split(";")]  # lists: hidden=[32];[64]
        else:
            grid[key] = [parse_value(v) for v in values.split(",")]
    return grid


def preset_meta(env_id):
    from numba_a3c.config import preset_file

    path = preset_file(env_id)
    with open(path) as fh:
        return path, json.load(fh)


def run_in_process(values):
    """Train one run in this process; returns (greedy returns, steps, wall seconds)."""
    from numba_a3c.config import resolve
    from numba_a3c.trainer import Trainer

    t0 = time.monotonic()
    trainer = Trainer(resolve(values))
    result = trainer.run()
    wall = time.monotonic() - t0
    if result.final_eval is None:
        raise RuntimeError(f"run ended '{result.status}' without a final evaluation: {result.error}")
    return result.final_eval.returns, result.steps, wall


def run_cli(values):
    """Train one run as its own ``asyncrl train --quiet`` process; the final evaluation is the last
    row of the run directory's evaluations.csv. Wall time covers the whole process."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="check-presets-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "numba_a3c.cli.main", "train", "--quiet", "--out", str(out)]
        for key, value in values.items():
            opt = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                cmd.append(opt if value else "--no-" + key.replace("_", "-"))
            elif isinstance(value, (list, tuple)):
                cmd += [opt, ",".join(str(v) for v in value)]
            else:
                cmd += [opt, str(value)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr or proc.stdout}")
        with open(out / "evaluations.csv") as fh:
            rows = list(csv.DictReader(fh))
        last = rows[-1]
        return np.array([float(last["mean"])]), int(float(last["global_step"])), wall


def generic_threshold(env_id, given):
    """The return that counts as solved in ``--generic`` mode: ``given``, else gymnasium's
    ``reward_threshold`` for the id, else the environment's own preset's ``solved``, else None."""
    if given is not None:
        return given
    import gymnasium

    from numba_a3c.config import preset_names

    spec = gymnasium.registry.get(env_id.partition(":")[2] or env_id)
    if spec is not None and spec.reward_threshold is not None:
        return float(spec.reward_threshold)
    if env_id.replace("/", "_") in preset_names():
        return preset_meta(env_id)[1].get("solved")
    return None


def check_generic(args, algos, need, changes):
    """``--generic``: the generic defaults (with ``changes``, the --set values, on top) on each
    environment of ``args.env``; prints the table."""
    envs = [e.strip() for e in args.env.split(",") if e.strip()]
    print(f"generic defaults (preset default.json, no preset naming the environment): {', '.join(envs)}"
          f"{' (gymnasium versions)' if args.gym else ''}, threads {args.threads}, seeds {args.seeds}, "
          f"need {need}/{len(args.seeds)}{''.join(f', {k}={v}' for k, v in changes.items())}; "
          f"{os.cpu_count()} cores", flush=True)
    t_start = time.monotonic()
    rows, all_ok = [], True
    for env_id in envs:
        threshold = generic_threshold(env_id, args.threshold)
        for algo in algos:
            means, walls = [], []
            for seed in args.seeds:
                values = {**dict(algo=algo, env=env_id, preset="default", threads=args.threads, seed=seed,
                                 log_interval=3600.0, **({"gym": True} if args.gym else {})), **changes}
                t0 = time.monotonic()
                try:
                    returns, steps, wall = (run_cli if args.cli else run_in_process)(values)
                    means.append(float(returns.mean()))
                    print(f"  {env_id} {algo} seed {seed}: greedy mean {means[-1]:.2f}, {steps:,} steps, {wall:.1f} s",
                          flush=True)
                except RuntimeError as exc:   # diverged or failed: a row of the table, not the end of the check
                    wall = time.monotonic() - t0
                    means.append(str(exc).partition("ended '")[2].partition("'")[0] or "failed")
                    print(f"  {env_id} {algo} seed {seed}: {exc}", flush=True)
                walls.append(wall)
            finals = [m for m in means if not isinstance(m, str)]
            passed = sum(m >= threshold for m in finals) if threshold is not None else None
            all_ok &= passed is not None and passed >= need
            solved = "-" if passed is None else f"{passed}/{len(means)} (>= {threshold:g})"
            rows.append((env_id + (" --gym" if args.gym else ""), algo, solved,
                         ", ".join(m if isinstance(m, str) else f"{m:.1f}" for m in means),
                         f"{sorted(walls)[len(walls) // 2]:.1f} s"))
    head = ("environment", "method", "solved", "greedy mean per seed", "wall per run (median)")
    print(f"\n| {' | '.join(head)} |\n|{'---|' * len(head)}")
    for row in rows:
        print(f"| {' | '.join(row)} |")
    print(f"\n{time.monotonic() - t_start:.0f} s in all")
    return 0 if all_ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1", help="environment id (its preset is checked) [CartPole-v1]")
    ap.add_argument("--algos", default=",".join(ALGOS), help="comma-separated algorithms [all four]")
    ap.add_argument("--seeds", type=parse_seeds, default=list(range(5)),
                    help="a count (5: seeds 0..4) or a comma-separated list of seeds [5]")
    ap.add_argument("--threads", type=int, default=2, help="actor-learner threads per run [2]")
    ap.add_argument("--threshold", type=float, default=None,
                    help="greedy mean return that counts as solved [the preset's 'solved']")
    ap.add_argument("--need", type=int, default=None,
                    help="seeds that must pass per algorithm [4 of 5, scaled to the number of seeds]")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1[,V2...]",
                    help="override a preset value; several values make a sweep (repeatable)")
    ap.add_argument("--cli", action="store_true",
                    help="run each seed as a separate `asyncrl train` process and time all of it")
    ap.add_argument("--generic", action="store_true",
                    help="train with the generic defaults (no preset naming the environment) on each environment "
                         "of a comma-separated --env, and print one table")
    ap.add_argument("--gym", action="store_true", help="use gymnasium's versions of native environments")
    args = ap.parse_args(argv)

    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    bad = [a for a in algos if a not in ALGOS]
    if bad:
        ap.error(f"unknown algorithm(s) {', '.join(bad)}; choose from {', '.join(ALGOS)}")
    need = args.need if args.need is not None else max(1, -(-4 * len(args.seeds) // 5))
    grid = parse_set(args.sets)
    import dataclasses

    from numba_a3c.config import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(grid) - fields)
    if unknown:
        ap.error(f"--set {', '.join(unknown)}: not a training setting; choose from {', '.join(sorted(fields))}")
    keys = sorted(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]
    if args.generic:
        if len(points) > 1:
            ap.error("--generic takes one value per --set (a change to the generic defaults, e.g. steps=1000), "
                     "not a sweep")
        return check_generic(args, algos, need, points[0])
    path, meta = preset_meta(args.env)
    threshold = args.threshold if args.threshold is not None else meta.get("solved")
    if threshold is None:
        ap.error(f"{path.name} has no 'solved' threshold; give --threshold")

    print(f"preset {path.name}: {args.env}, threads {args.threads}, seeds {args.seeds}, "
          f"solved = greedy mean >= {threshold:g}, need {need}/{len(args.seeds)}; "
          f"{'one process per run' if args.cli else 'in one process'}; {os.cpu_count()} cores", flush=True)
    all_ok = True
    summary = []
    t_start = time.monotonic()
    for algo in algos:
        for point in points:
            label = algo + "".join(f" {k}={v}" for k, v in point.items())
            passed, walls = 0, []
            for seed in args.seeds:
                # --set wins over this script's own choices (eval_every=0, the quiet log_interval).
                values = {**dict(algo=algo, env=args.env, threads=args.threads, seed=seed, eval_every=0,
                                 log_interval=3600.0, **({"gym": True} if args.gym else {})), **point}
                returns, steps, wall = (run_cli if args.cli else run_in_process)(values)
                mean = float(returns.mean())
                ok = mean >= threshold
                passed += ok
                walls.append(wall)
                print(f"  {label:<32} seed {seed:>3}: greedy mean {mean:9.2f}  {'PASS' if ok else 'fail'}  "
                      f"{steps:>9,} steps  {wall:6.2f} s", flush=True)
            good = passed >= need
            all_ok &= good
            line = (f"{label:<34} passed {passed}/{len(args.seeds)} (need {need})  "
                    f"wall per run: median {sorted(walls)[len(walls) // 2]:.2f} s, max {max(walls):.2f} s"
                    f"  {'OK' if good else 'NOT OK'}")
            summary.append(line)
            print(line, flush=True)
    print(f"summary ({time.monotonic() - t_start:.0f} s in all):")
    for line in summary:
        print("  " + line)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
