#!/usr/bin/env python
"""Soak test: many Hogwild threads for a long time, with periodic checkpoints.

Trains with ``--threads`` worker threads (default 16, whatever the number of cores) on a native
environment for ``--minutes`` (or ``--seconds``), saving ``latest.h5`` every ``--save-every``
global steps, and every ``--interval`` seconds records the global step T, the throughput of that
interval and the process's resident memory. Each new ``latest.h5`` is loaded back (while the
run keeps writing: saves are atomic, so a reader sees the old file or the new one, never half
of one) and its parameters checked finite. At the end the run is stopped the way Ctrl-C stops
it, and the final checkpoint is loaded and checked too::

    python scripts/soak.py --minutes 10                 # the issue's soak: 16 threads, 10 minutes
    python scripts/soak.py --seconds 15 --interval 1    # the short version the default tests run

It prints one line per interval and a summary: resident memory at the start (after the first
interval, so compilation and warm-up are excluded) and at the end, throughput per interval
(min / median / max, and the last quarter's median over the first quarter's), the number of
checkpoints loaded, and whether the global step counter is exact (T equals the sum of the
threads' own step counters). Exit status 1 on a hard failure: a deadlock (T stops moving for
``--stall`` seconds, or the run does not end within ``--stall`` seconds of being stopped), an
unloadable or non-finite checkpoint, an inexact counter, a run that failed or diverged, or
resident memory growing by more than ``--max-rss-growth`` MiB plus ``--bytes-per-episode`` (16)
for each episode finished (the run appends its episodes to episodes.csv and keeps only the last
10,000 in memory, so nothing in it grows with the number of episodes; a leak per step, per
update, per episode or per save would exceed that allowance), or a save time that grows with the
run (the median of the last quarter's saves more than 3 times the first quarter's plus 20 ms).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="soak length in minutes [default: 10]")
    length.add_argument("--seconds", type=float, default=None, help="soak length in seconds")
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--env", default="CartPole-v1", help="a native environment id [default: CartPole-v1]")
    p.add_argument("--algo", default="a3c")
    p.add_argument("--save-every", type=int, default=2_000_000, help="global steps between checkpoints")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between report lines")
    p.add_argument("--stall", type=float, default=30.0, help="seconds without progress that count as a deadlock")
    p.add_argument("--max-rss-growth", type=float, default=256.0,
                   help="MiB of resident memory growth (start to end) that fails the soak, on top of "
                        "--bytes-per-episode for every episode finished")
    p.add_argument("--bytes-per-episode", type=float, default=16.0,
                   help="growth allowed per finished episode (the episode log is appended to episodes.csv, "
                        "not kept in memory)")
    p.add_argument("--out", default=None, help="run directory [default: a temporary one, removed at the end]")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.duration = (args.seconds if args.seconds is not None
                     else 60.0 * (args.minutes if args.minutes is not None else 10.0))
    return args


def main(argv=None):
    args = parse_args(argv)
    import h5py  # noqa: F401 - imported before the first reading, so its memory is not counted as growth
    import numpy as np

    from numba_a3c import checkpoint
    from numba_a3c.algorithms.state import C_T, TI_STEPS
    from numba_a3c.benchmarks.report import resident_mib
    from numba_a3c.config import resolve
    from numba_a3c.trainer import Trainer

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="asyncrl-soak-"))
    config = resolve(dict(env=args.env, algo=args.algo, threads=args.threads, steps=10**12, seed=args.seed,
                          save_every=args.save_every, eval_every=0, log_interval=args.interval))
    failures = []
    rows = []                   # (elapsed, T, steps/s of the interval, RSS MiB, episodes)
    loaded = []                 # global steps of the checkpoints loaded during the run
    last_seen = {"mtime": None, "T": 0, "time": time.monotonic()}
    state = {"stopping_since": None}

    def check_checkpoint(path):
        try:
            ck = checkpoint.load(path, whole_log=False)   # the tail: reading episodes.csv back is not the run's cost
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            failures.append(f"checkpoint {path} did not load: {exc}")
            return None
        if not np.isfinite(ck.theta).all():
            failures.append(f"checkpoint {path} (step {ck.global_step:,}) holds non-finite parameters")
        return ck

    def on_progress(p):
        now = time.monotonic()
        prev_T = rows[-1][1] if rows else 0
        prev_t = rows[-1][0] if rows else 0.0
        rate = (p.steps - prev_T) / (p.elapsed - prev_t) if p.elapsed > prev_t else 0.0
        rss = resident_mib()
        rows.append((p.elapsed, p.steps, rate, rss, p.episodes))
        latest = out / "latest.h5"
        note = ""
        if latest.exists() and latest.stat().st_mtime_ns != last_seen["mtime"]:
            last_seen["mtime"] = latest.stat().st_mtime_ns
            ck = check_checkpoint(latest)
            if ck is not None:
                loaded.append(ck.global_step)
                note = f"  checkpoint at step {ck.global_step:,} loaded"
        print(f"{p.elapsed:8.1f} s  T {p.steps:>14,}  {rate:>11,.0f} steps/s  RSS {rss:8.1f} MiB  "
              f"episodes {p.episodes:>10,}{note}", flush=True)
        if p.steps > last_seen["T"]:
            last_seen["T"], last_seen["time"] = p.steps, now
        if p.elapsed >= args.duration and state["stopping_since"] is None:
            state["stopping_since"] = now
            trainer.request_stop()

    trainer = Trainer(config, on_progress=on_progress, final_eval=False, run_dir=out)
    save_times = []             # seconds each save of latest.h5 took, in order
    untimed_save = trainer.save

    def timed_save(path, *a, **kw):
        t = time.perf_counter()
        try:
            return untimed_save(path, *a, **kw)
        finally:
            if Path(path).name == "latest.h5":
                save_times.append(time.perf_counter() - t)

    trainer.save = timed_save
    print(f"soak: {args.threads} threads, {args.algo} on {args.env}, {args.duration:.0f} s, checkpoint every "
          f"{args.save_every:,} steps into {out}, {os.cpu_count()} cores", flush=True)

    # The watchdog: the monitor loop itself could be what hangs, so it runs in its own thread.
    done = threading.Event()

    def watchdog():
        while not done.wait(1.0):
            now = time.monotonic()
            stalled = now - last_seen["time"] > args.stall and state["stopping_since"] is None
            late = state["stopping_since"] is not None and now - state["stopping_since"] > args.stall
            if stalled or late:
                what = "T stopped moving" if stalled else "the run did not end after being stopped"
                print(f"DEADLOCK: {what} for {args.stall:.0f} s at T={int(trainer.shared.counters[C_T]):,}",
                      flush=True)
                os._exit(1)

    threading.Thread(target=watchdog, name="soak-watchdog", daemon=True).start()
    t0 = time.monotonic()
    last_seen["time"] = t0 + 120.0  # compilation (cold cache) does not count as a stall
    result = trainer.run()
    done.set()
    total = time.monotonic() - t0

    if result.status != "stopped":
        failures.append(f"the run ended {result.status}: {result.error}")
    T = int(trainer.shared.counters[C_T])
    per_thread = int(trainer.shared.thread_i[:, TI_STEPS].sum())
    if T != per_thread:
        failures.append(f"global step counter T={T:,} differs from the sum of the threads' steps {per_thread:,}")
    final = check_checkpoint(out / "latest.h5")
    if final is not None:
        loaded.append(final.global_step)
        if final.global_step != T:
            failures.append(f"the final checkpoint is at step {final.global_step:,}, the run at {T:,}")

    print()
    print(f"summary: {result.status} after {total:.1f} s: T = {T:,} (sum of per-thread steps {per_thread:,}: "
          f"{'exact' if T == per_thread else 'MISMATCH'}), {result.episodes:,} episodes")
    if rows:
        rss_start, rss_end = rows[0][3], rows[-1][3]
        growth = rss_end - rss_start
        episodes = rows[-1][4] - rows[0][4]
        per_episode = f", {1024 * 1024 * growth / episodes:,.0f} bytes per episode finished" if episodes > 0 else ""
        limit = args.max_rss_growth + max(episodes, 0) * args.bytes_per_episode / 2**20
        print(f"resident memory: {rss_start:.1f} MiB at the first interval, {rss_end:.1f} MiB at the end "
              f"({growth:+.1f} MiB{per_episode}; limit {limit:.0f} MiB = {args.max_rss_growth:.0f} + "
              f"{args.bytes_per_episode:.0f} bytes per episode)")
        if growth > limit:
            failures.append(f"resident memory grew by {growth:.1f} MiB, more than {limit:.0f} MiB")
        rates = [r[2] for r in rows[1:]] or [rows[0][2]]
        q = max(1, len(rates) // 4)
        first, last = statistics.median(rates[:q]), statistics.median(rates[-q:])
        print(f"throughput per interval: min {min(rates):,.0f}, median {statistics.median(rates):,.0f}, "
              f"max {max(rates):,.0f} steps/s; last quarter / first quarter = {last / first if first else 0:.2f}")
    if len(save_times) >= 4:
        q = max(1, len(save_times) // 4)
        first, last = statistics.median(save_times[:q]), statistics.median(save_times[-q:])
        print(f"save time of latest.h5: {len(save_times)} saves, median {1000 * first:.1f} ms in the first quarter, "
              f"{1000 * last:.1f} ms in the last (ratio {last / first if first else 0:.2f})")
        if last > 3 * first + 0.020:
            failures.append(f"saves got slower: median {1000 * first:.1f} ms -> {1000 * last:.1f} ms")
    print(f"checkpoints loaded: {len(loaded)} (steps {', '.join(f'{s:,}' for s in loaded[:8])}"
          f"{', ...' if len(loaded) > 8 else ''}), all finite: {not any('non-finite' in f for f in failures)}")
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    for f in failures:
        print(f"FAILED: {f}")
    print("soak passed" if not failures else "soak FAILED")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
