"""The paper's Table 2 measure: how much faster n threads reach a reference score than one thread.

Mnih et al. (2016) report, for each method, the wall-clock time to reach a reference score with
1 thread divided by the time with n threads (averaged over seven Atari games). Here the same
measure is taken on a native environment (CartPole-v1 by default) in seconds:

    time_to_target(n) = wall-clock seconds from the start of the workers (kernels already
                        compiled) until the reference score is first reached
    speed-up(n)       = median over seeds of time_to_target(1)
                        / median over seeds of time_to_target(n)

Each run is a :class:`~numba_a3c.trainer.Trainer` run with the environment's preset for the
method (its learning rate, network and step budget T_max; the learning rate anneals over that
budget exactly as in ``asyncrl train``), stopped as soon as the score is reached, or when the
budget or the per-run time cap runs out: then the run counts as "not reached" (an infinite time
in the median). Two ways to say "reached" (``criterion``):

``eval``   (default) a greedy evaluation of ``eval_episodes`` episodes, run beside the workers
           every ``eval_every`` global steps on a snapshot of θ, has a mean return ≥ the target
           (CartPole-v1: 475, the threshold at which gymnasium calls it solved). The time is the
           moment the snapshot was taken. Evaluations run on a thread of their own and compete
           with the workers for the cores, and one starts only when the last has finished, so the
           resolution is one evaluation interval or the length of one evaluation.
``train``  the mean return of the last 100 training episodes (the ``return(100)`` of ``asyncrl
           train``'s progress line) is ≥ the target. It needs no evaluation, but it measures the
           exploring policy: with the paper's ε (a third of the threads keep ε = 0.5) the Q methods
           may never get there on CartPole, so give it a lower target (e.g. ``--target 195``).

Like the paper's numbers, these include data efficiency: with more threads the policy may need
more or fewer steps to reach the score, so the time speed-up is the throughput speed-up times
the ratio of steps to target. The steps to target are reported beside the times for that reason.
On a machine with fewer cores than threads, the extra threads add no compute, only data effects.
"""

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from numba_a3c.algorithms.state import C_STOP
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
from numba_a3c.data import data_path
from numba_a3c.trainer import Trainer

CRITERIA = ("eval", "train")

#: Reference scores of the native environments (``eval`` criterion): gymnasium's "solved" thresholds
#: for CartPole-v1 and Acrobot-v1; Catch-v0 at 0.8 means catching 90 % of the balls.
DEFAULT_TARGETS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Catch-v0": 0.8}


def paper_table2():
    """The paper's Table 2 from ``data/reference/paper.json``: {method: {threads: speed-up}}."""
    with open(data_path("reference", "paper.json")) as fh:
        t2 = json.load(fh)["table2_speedup"]
    return {algo: dict(zip(t2["threads"], values)) for algo, values in t2["methods"].items()}


class _TargetProbe(Trainer):
    """A Trainer that stops itself when the reference score is reached or the time cap is hit."""

    def __init__(self, config, target, criterion, time_cap):
        super().__init__(config, on_eval=self._check_eval, final_eval=criterion == "eval", run_dir=None)
        self.target = float(target)
        self.criterion = criterion
        self.time_cap = float(time_cap)
        self.reached = None        # (seconds, global step) when the target was first reached
        self.capped = False

    def _check_eval(self, ev):
        if self.criterion == "eval" and self.reached is None and ev.mean >= self.target:
            self.reached = (ev.wall_time, ev.steps)
            self.shared.counters[C_STOP] = 1

    def on_tick(self, steps, wall):
        super().on_tick(steps, wall)
        recent = self.episodes.recent
        if (self.criterion == "train" and self.reached is None and len(recent) == recent.maxlen
                and float(np.mean(recent)) >= self.target):
            self.reached = (wall, steps)
            self.shared.counters[C_STOP] = 1
        if self.reached is None and wall >= self.time_cap and not self.capped:
            self.capped = True
            self.shared.counters[C_STOP] = 1


@dataclass
class Attempt:
    """One training run towards the reference score."""

    seed: int
    reached: bool
    seconds: float            # time to target (inf when not reached)
    steps: int                # global steps at the target (−1 when not reached)
    run_seconds: float        # how long the run lasted
    run_steps: int
    outcome: str              # "reached", "budget spent", "time cap", "diverged", "failed: …"


def attempt(config, target, criterion="eval", time_cap=60.0):
    """Train ``config`` until ``target`` is reached (or the budget or ``time_cap`` runs out)."""
    probe = _TargetProbe(config, target, criterion, time_cap)
    result = probe.run()
    reached = probe.reached
    if reached is None and criterion == "eval" and result.final_eval is not None \
            and result.final_eval.mean >= target:
        reached = (result.final_eval.wall_time, result.final_eval.steps)
    if reached is not None:
        outcome = "reached"
    elif result.error:
        outcome = f"failed: {result.error}"
    elif result.status == "diverged":
        outcome = "diverged"
    elif probe.capped:
        outcome = "time cap"
    else:
        outcome = "budget spent"
    return Attempt(seed=config.seed, reached=reached is not None,
                   seconds=reached[0] if reached else math.inf, steps=int(reached[1]) if reached else -1,
                   run_seconds=result.wall_time, run_steps=result.steps, outcome=outcome)


@dataclass
class SpeedupRow:
    algo: str
    threads: int
    oversubscribed: bool
    attempts: list
    reached: int              # how many seeds reached the target
    median_seconds: float     # median time to target over seeds (inf: most did not reach it)
    median_steps: float       # median global steps to target over the seeds that reached it
    speedup: float = math.nan
    paper: float = math.nan   # the paper's Table 2 value (nan where it has none)


@dataclass
class SpeedupResult:
    machine: dict
    settings: dict
    rows: list = field(default_factory=list)

    def to_dict(self):
        """A JSON-ready dict (a time that was never reached, inf, becomes None)."""
        return json_ready(dict(benchmark="speedup", machine=self.machine, settings=self.settings,
                               rows=[asdict(r) for r in self.rows]))


def run_config(algo, env, threads, seed, criterion, eval_every, eval_episodes, steps=None, gym=False):
    """The preset configuration of one attempt (no run directory, periodic evaluations for ``eval``)."""
    return resolve(dict(algo=algo, env=env, threads=threads, seed=seed, steps=steps, gym=gym or None,
                        eval_every=eval_every if criterion == "eval" else 0, eval_episodes=eval_episodes,
                        save_every=0, log_interval=3600.0))


def run(algos=ALGORITHMS, threads=(1, 2, 4, 8, 16), env="CartPole-v1", seeds=(0, 1, 2, 3, 4), target=None,
        criterion="eval", eval_every=5000, eval_episodes=10, steps=None, time_cap=60.0, gym=False, progress=None):
    """Time to the reference score for every (method, threads, seed); returns a :class:`SpeedupResult`."""
    say = progress or (lambda msg: None)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; expected one of {CRITERIA}")
    if target is None:
        if env not in DEFAULT_TARGETS:
            raise ValueError(f"there is no default reference score for {env}; give one with --target")
        target = DEFAULT_TARGETS[env]
    for algo in algos:   # refuse a bad configuration before the first run, not in the middle
        Trainer(run_config(algo, env, max(threads), seeds[0], criterion, eval_every, eval_episodes, steps, gym))
    paper = paper_table2()
    n_cores = cores()
    result = SpeedupResult(machine=machine(), settings=dict(
        env=env, gym=bool(gym), algos=list(algos), threads=list(threads), seeds=list(seeds), target=float(target),
        criterion=criterion, eval_every=int(eval_every), eval_episodes=int(eval_episodes), steps=steps,
        time_cap_s=float(time_cap)))
    for algo in algos:
        rows = []
        for n in threads:
            attempts = []
            for seed in seeds:
                config = run_config(algo, env, n, seed, criterion, eval_every, eval_episodes, steps, gym)
                a = attempt(config, target, criterion, time_cap)
                attempts.append(a)
                say(f"{algo:>9}  {n:>2} threads  seed {seed}: "
                    + (f"reached {target:g} after {a.seconds:.2f} s, {a.steps:,} steps" if a.reached
                       else f"not reached ({a.outcome}) in {a.run_seconds:.1f} s, {a.run_steps:,} steps"))
            times = [a.seconds for a in attempts]
            med = float(np.median(times)) if times else math.nan   # inf stays inf: "most did not reach it"
            row = SpeedupRow(algo=algo, threads=int(n), oversubscribed=n > n_cores, attempts=attempts,
                             reached=sum(a.reached for a in attempts), median_seconds=med,
                             median_steps=median([a.steps for a in attempts if a.reached]),
                             paper=paper.get(algo, {}).get(n, math.nan))
            rows.append(row)
        base = next((r.median_seconds for r in rows if r.threads == 1), math.nan)
        for row in rows:
            if math.isfinite(base) and math.isfinite(row.median_seconds) and row.median_seconds > 0:
                row.speedup = base / row.median_seconds
        result.rows.extend(rows)
    return result


def format_result(result):
    """The per-run detail table, then the Table 2 form: measured (paper) per method and thread count."""
    s = result.settings
    lines = machine_lines(result.machine)
    what = (f"greedy evaluation (mean of {s['eval_episodes']} episodes, every {s['eval_every']:,} steps)"
            if s["criterion"] == "eval" else "mean return of the last 100 training episodes")
    lines.append(f"speed-up: wall-clock time to reach {s['target']:g} on {s['env']} by {what}, with n threads vs 1; "
                 f"median over seeds {','.join(map(str, s['seeds']))}; per-run cap {s['time_cap_s']:g} s; "
                 f"compile excluded")
    lines.append("")
    headers = ["algorithm", "threads", "reached", "time (s)", "steps to target", "speed-up", "paper"]
    rows = []
    for r in result.rows:
        t = "not reached" if math.isinf(r.median_seconds) else fmt(r.median_seconds, ".2f")
        rows.append([r.algo, f"{r.threads}{OVERSUBSCRIBED_MARK if r.oversubscribed else ''}",
                     f"{r.reached}/{len(r.attempts)}", t, fmt(r.median_steps), fmt(r.speedup, ".2f"),
                     fmt(r.paper, ".1f")])
    lines.append(table(headers, rows))
    n_cores = result.machine["usable_cores"]
    if any(r.oversubscribed for r in result.rows):
        lines.append(f"{OVERSUBSCRIBED_MARK} more threads than the {n_cores} cores: no extra compute, only the "
                     f"effect of more, decorrelated actor-learners")
    lines.append("")
    lines.append("Table 2 form: speed-up measured here (paper's, 7 Atari games)")
    algos = list(dict.fromkeys(r.algo for r in result.rows))
    threads = list(dict.fromkeys(r.threads for r in result.rows))
    by = {(r.algo, r.threads): r for r in result.rows}
    t2 = []
    for algo in algos:
        cells = [algo]
        for n in threads:
            r = by.get((algo, n))
            cells.append("-" if r is None else f"{fmt(r.speedup, '.2f')} ({fmt(r.paper, '.1f')})")
        t2.append(cells)
    lines.append(table(["method"] + [f"{n} thr" for n in threads], t2))
    return "\n".join(lines)


def plot(result, path):
    """Speed-up against threads per method (solid, measured) beside the paper's (dashed)."""
    from numba_a3c.benchmarks.report import require_matplotlib

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for algo in dict.fromkeys(r.algo for r in result.rows):
        rows = [r for r in result.rows if r.algo == algo]
        line, = ax.plot([r.threads for r in rows], [r.speedup for r in rows], marker="o", label=f"{algo} (here)")
        paper = [(r.threads, r.paper) for r in rows if math.isfinite(r.paper)]
        if paper:
            ax.plot(*zip(*paper), linestyle="--", color=line.get_color(), alpha=0.6, label=f"{algo} (paper)")
    ticks = sorted({r.threads for r in result.rows})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("threads")
    ax.set_ylabel("speed-up to reference score")
    n_cores = result.machine["usable_cores"]
    ax.axvline(n_cores, color="grey", linestyle=":", label=f"{n_cores} cores")
    ax.legend(fontsize=7)
    s = result.settings
    ax.set_title(f"time to {s['target']:g} on {s['env']}, median of {len(s['seeds'])} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
