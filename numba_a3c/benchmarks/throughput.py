"""Throughput: environment steps per second of real training, per algorithm and thread count.

Each measurement is one :class:`~numba_a3c.trainer.Trainer` run, the object ``asyncrl train``
uses, with the environment's preset for the algorithm, no run directory, no periodic or final
evaluation and a budget too large to end it. So the workers run exactly the code a user trains
with: for a native environment :func:`~numba_a3c.workers.run_native` (environment, forward,
backward, update, all in nopython code with the GIL released); for a gymnasium environment the
Python loop around the same step functions. The trainer's own monitor loop (collecting finished
episodes about 50 times a second) runs beside them, as it does in training.

One measurement::

    compile the kernels (Trainer.run does it before the clock starts)
    start the workers;  discard the first ``warmup`` seconds (thread start, caches, ε annealing)
    (t₀, T₀) ← clock and global step counter;  wait ``duration`` seconds;  (t₁, T₁) ← the same
    throughput = (T₁ − T₀) / (t₁ − t₀)          then raise the stop flag

T is the global step counter of the paper: environment steps summed over all threads (one agent
step is one environment step here; no frame skip outside Atari). Each (algorithm, threads) cell
is measured ``repeats`` times with fresh parameters (seed = repeat index) and reported as the
median; the speed-up of n threads is median(n) / median(1 thread). Threads beyond the number of
cores cannot add compute: there the speed-up shows what oversubscription costs (or does not).

A Python (gymnasium) environment can be measured both ways (``env_processes="both"``): workers as
threads of one process, where the environment's ``step`` holds the GIL, and each worker in a
process of its own on shared parameters (:mod:`numba_a3c.worker_processes`). The rows then
alternate threads / processes for each worker count, and every speed-up is over 1 thread
in-process, so the two compare side by side.
"""

import math
import time
from dataclasses import asdict, dataclass, field

from numba_a3c.algorithms.state import C_STOP, C_T
from numba_a3c.benchmarks.report import (
    OVERSUBSCRIBED_MARK,
    cores,
    fmt,
    json_ready,
    machine,
    machine_lines,
    median,
    table,
)
from numba_a3c.config import ALGORITHMS, resolve
from numba_a3c.envs.registry import describe_env
from numba_a3c.envs.subproc import want_processes
from numba_a3c.trainer import Trainer

#: A budget no measurement reaches (weeks at a million steps/s): the run ends by the stop flag.
ENDLESS = 10**12

#: Issue 3's targets for A3C on native CartPole-v1 (reported, never asserted).
TARGET_STEPS_PER_S_1_THREAD = 300_000
TARGET_SPEEDUP_2_THREADS = 1.8
TARGET_SPEEDUP_16_THREADS = 1.7


class _Probe(Trainer):
    """A Trainer whose monitor loop samples (clock, T) after the warm-up and stops the run after the window."""

    def __init__(self, config, warmup, duration):
        super().__init__(config, final_eval=False, run_dir=None)
        self.warmup = float(warmup)
        self.duration = float(duration)
        self.window_start = None   # (monotonic time, T)
        self.window_end = None

    def on_tick(self, steps, wall):
        super().on_tick(steps, wall)
        if self.window_end is not None:
            return
        now = time.monotonic()
        T = int(self.shared.counters[C_T])
        if self.window_start is None:
            if wall >= self.warmup:
                self.window_start = (now, T)
        elif now - self.window_start[0] >= self.duration:
            self.window_end = (now, T)
            self.shared.counters[C_STOP] = 1


#: ``env_processes`` of :func:`run` → the TrainConfig values measured (None: the trainer's default).
ENV_PROCESS_MODES = {"auto": (None,), "off": (False,), "on": (True,), "both": (False, True)}


def bench_config(algo, env, threads, seed=0, gym=False, env_processes=None, preset=""):
    """The preset configuration of ``algo`` on ``env`` with ``threads`` threads, made endless and quiet
    (``preset``: another preset's, as ``asyncrl train --preset``; empty: the environment's own)."""
    return resolve(dict(algo=algo, env=env, threads=threads, seed=seed, gym=gym or None, steps=ENDLESS,
                        eval_every=0, save_every=0, log_interval=3600.0, env_processes=env_processes,
                        preset=preset or None))


def measure_once(config, warmup=1.0, duration=2.0):
    """Steps/s of one run over the window after ``warmup`` seconds; (steps/s, status).

    status is "ok", or why the window could not be measured (the run diverged or failed first).
    """
    probe = _Probe(config, warmup, duration)
    result = probe.run()
    if probe.window_end is None:
        reason = result.error or f"the run ended ({result.status}) before the measurement window closed"
        return math.nan, reason
    (t0, T0), (t1, T1) = probe.window_start, probe.window_end
    return (T1 - T0) / (t1 - t0), "ok"


@dataclass
class ThroughputRow:
    algo: str
    env: str
    env_kind: str             # "native" or "gym" (a Python environment: its step holds the GIL)
    threads: int
    cores: int
    oversubscribed: bool      # threads > cores
    samples: list             # steps/s of each repeat
    steps_per_s: float        # median of the samples
    speedup: float = math.nan  # steps_per_s / steps_per_s of 1 thread (in-process) (nan without that row)
    status: str = "ok"
    env_processes: bool = False  # each thread's Python environment stepped in a process of its own


@dataclass
class ThroughputResult:
    machine: dict
    settings: dict
    rows: list = field(default_factory=list)
    targets: list = field(default_factory=list)

    def to_dict(self):
        """A JSON-ready dict (a cell that could not be measured, nan, becomes None)."""
        return json_ready(dict(benchmark="throughput", machine=self.machine, settings=self.settings,
                               rows=[asdict(r) for r in self.rows], targets=self.targets))


def run(algos=ALGORITHMS, threads=(1, 2, 4, 8, 16), env="CartPole-v1", gym=False, repeats=3, warmup=1.0,
        duration=2.0, progress=None, env_processes="auto", preset=""):
    """Measure every (algorithm, thread count, environment placement) cell; returns a :class:`ThroughputResult`.

    ``env_processes``: "auto" (the trainer's default), "off", "on" or "both" (see the module docstring).
    ``preset``: measure with this preset (e.g. ``atari-lstm`` on an Atari game) instead of the environment's.
    """
    say = progress or (lambda msg: None)
    n_cores = cores()
    info = describe_env(env, force_gym=gym)
    modes = ENV_PROCESS_MODES[env_processes]
    for algo in algos:   # refuse a bad configuration before the first measurement, not in the middle
        for mode in modes:
            Trainer(bench_config(algo, env, max(threads), gym=gym, env_processes=mode, preset=preset),
                    final_eval=False)
    first = bench_config(algos[0], env, 1, gym=gym, preset=preset)
    result = ThroughputResult(machine=machine(), settings=dict(
        env=env, gym=bool(gym), algos=list(algos), threads=list(threads), repeats=int(repeats),
        warmup_s=float(warmup), duration_s=float(duration), env_processes=env_processes,
        preset=first.preset, network=first.network))
    for algo in algos:
        rows = []
        for n in threads:
            for mode in modes:
                config = bench_config(algo, env, n, gym=gym, env_processes=mode, preset=preset)
                used = want_processes(mode, info, n)
                where = "  processes" if used else ("  in-process" if info.kind != "native" else "")
                samples, status = [], "ok"
                for r in range(repeats):
                    value, why = measure_once(config.replace(seed=r), warmup, duration)
                    samples.append(value)
                    if why != "ok":
                        status = why
                    say(f"{algo:>9}  {n:>2} threads{where}  repeat {r + 1}/{repeats}: {fmt(value)} steps/s"
                        + ("" if why == "ok" else f" ({why})"))
                rows.append(ThroughputRow(algo=algo, env=env, env_kind=info.kind, threads=int(n), cores=n_cores,
                                          oversubscribed=n > n_cores, samples=samples, steps_per_s=median(samples),
                                          status=status, env_processes=used))
        ones = [r for r in rows if r.threads == 1]
        base = next((r.steps_per_s for r in ones if not r.env_processes), ones[0].steps_per_s if ones else math.nan)
        for row in rows:
            row.speedup = row.steps_per_s / base if base > 0 else math.nan
        result.rows.extend(rows)
    result.targets = issue3_targets(result)
    return result


def issue3_targets(result):
    """Issue 3's throughput targets (A3C, native CartPole-v1) against what was measured, where measured."""
    if result.settings["env"] != "CartPole-v1" or result.settings["gym"]:
        return []
    rows = {r.threads: r for r in result.rows if r.algo == "a3c"}
    out = []
    if 1 in rows:
        v = rows[1].steps_per_s
        out.append(dict(target=f"A3C, 1 thread: >= {TARGET_STEPS_PER_S_1_THREAD:,} steps/s", measured=v,
                        met=bool(v >= TARGET_STEPS_PER_S_1_THREAD)))
        for n, goal in ((2, TARGET_SPEEDUP_2_THREADS), (16, TARGET_SPEEDUP_16_THREADS)):
            if n in rows:
                s = rows[n].speedup
                out.append(dict(target=f"A3C, {n} threads on {rows[n].cores} cores: >= {goal}x of 1 thread",
                                measured=s, met=bool(s >= goal)))
    return out


def format_result(result):
    """The human-readable report: machine, table, footnotes, targets."""
    lines = machine_lines(result.machine)
    s = result.settings
    lines.append(f"throughput: environment steps/s summed over threads, {s['env']}"
                 f"{' (gymnasium, Python step)' if s['gym'] else ''}, preset {s['preset']}"
                 f"{'' if s['network'] == 'auto' else ', network ' + s['network']}; median of {s['repeats']} runs, "
                 f"each measured over {s['duration_s']:g} s after {s['warmup_s']:g} s of warm-up (compile excluded)")
    lines.append("")
    headers = ["algorithm", "env", "threads", "steps/s", "min", "max", "speed-up"]
    rows = []
    for r in result.rows:
        finite = [x for x in r.samples if math.isfinite(x)]
        kind = f"{r.env_kind}, processes" if r.env_processes else r.env_kind
        rows.append([r.algo, f"{r.env} ({kind})", f"{r.threads}{OVERSUBSCRIBED_MARK if r.oversubscribed else ''}",
                     fmt(r.steps_per_s), fmt(min(finite) if finite else math.nan),
                     fmt(max(finite) if finite else math.nan), fmt(r.speedup, ".2f") + ("x" if math.isfinite(
                         r.speedup) else "")])
    lines.append(table(headers, rows, align=["<", "<"] + [">"] * 5))
    n_cores = result.rows[0].cores if result.rows else cores()
    if any(r.oversubscribed for r in result.rows):
        lines.append(f"{OVERSUBSCRIBED_MARK} more threads than the {n_cores} cores: no extra compute; the speed-up "
                     f"shows what oversubscription costs")
    if any(r.env_processes for r in result.rows):
        lines.append("processes: each thread's environment steps in a process of its own (--env-processes); "
                     "speed-ups are over 1 thread in-process")
    for r in result.rows:
        if r.status != "ok":
            lines.append(f"note: {r.algo} with {r.threads} threads: {r.status}")
    if result.targets:
        lines.append("")
        lines.append("issue 3 targets (reported, not asserted):")
        for t in result.targets:
            measured = fmt(t["measured"], ",.0f") if "steps/s" in t["target"] else fmt(t["measured"], ".2f") + "x"
            lines.append(f"  {t['target']}: measured {measured} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def plot(result, path):
    """Steps/s and speed-up against threads, one line per algorithm, the core count marked."""
    from numba_a3c.benchmarks.report import require_matplotlib

    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for algo, processes in dict.fromkeys((r.algo, r.env_processes) for r in result.rows):
        rows = [r for r in result.rows if r.algo == algo and r.env_processes == processes]
        xs = [r.threads for r in rows]
        label = f"{algo}, worker processes" if processes else algo
        ax1.plot(xs, [r.steps_per_s for r in rows], marker="o", label=label)
        ax2.plot(xs, [r.speedup for r in rows], marker="o", label=label)
    n_cores = result.rows[0].cores if result.rows else cores()
    ticks = sorted({r.threads for r in result.rows})
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("threads")
        ax.axvline(n_cores, color="grey", linestyle=":", label=f"{n_cores} cores")
    ax1.set_ylabel("environment steps/s")
    ax2.set_ylabel("speed-up over 1 thread")
    ideal = [min(t, n_cores) for t in ticks]
    ax2.plot(ticks, ideal, color="grey", linewidth=0.8, linestyle="--", label="ideal: min(threads, cores)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.set_ylim(bottom=0)
    ax1.legend()
    s = result.settings
    fig.suptitle(f"asyncrl bench throughput: {s['env']}{' (gymnasium)' if s['gym'] else ''}, "
                 f"median of {s['repeats']}; {result.machine['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
