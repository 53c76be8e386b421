"""Optimizer robustness: final score against the learning rate, for the paper's three optimizers.

The paper (Mnih et al. 2016, section 5.1 and its robustness figure) trains 50 agents per
optimizer, each with a learning rate sampled from LogUniform(1e-4, 1e-2), and plots their final
scores sorted from best to worst: the larger the area under that curve, the less the optimizer
cares about its learning rate. Shared RMSProp came out the most robust. The three optimizers
(:mod:`numba_a3c.optim`, ``--optimizer`` of ``asyncrl train``):

``momentum``        per-thread momentum SGD: m ← α m + (1 − α) Δθ;  θ ← θ − η m
``rmsprop``         RMSProp with per-thread statistics g
``shared-rmsprop``  RMSProp with ONE g shared by all threads, updated lock-free (the paper's)

Here: ``runs`` learning rates are drawn from LogUniform(lr_low, lr_high) with one seeded
generator, and EVERY optimizer trains once with each of them (run i also gets seed i for its
parameters and environments), so the three curves differ only by the optimizer. Each run is a
:class:`~numba_a3c.trainer.Trainer` run with the environment's preset for the method (budget,
network, α = 0.99, ε = 0.1, clipping) except the learning rate and the optimizer, followed by
the trainer's final greedy evaluation; its mean return is the run's score. A run that diverges
(a NaN loss) scores nothing.

Summary per optimizer, as in the paper's figure: the runs are sorted by score, best first, and

``solved``   the fraction of runs whose score reaches ``threshold`` (CartPole-v1: 475);
``AUC``      the area under the sorted-score curve divided by the number of runs and by the
             threshold: 1.0 if every run reaches the threshold, 0 if none scores at all
             (it equals the mean score over the threshold; a diverged run counts as 0);
``lr range`` the smallest and largest learning rate whose run reached the threshold.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from numba_a3c.benchmarks.report import fmt, json_ready, machine, machine_lines, table
from numba_a3c.config import OPTIMIZERS, resolve
from numba_a3c.trainer import Trainer

#: Threshold scores ("solved") of the native environments.
DEFAULT_THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "Catch-v0": 0.8}


def sample_learning_rates(runs, low=1e-4, high=1e-2, seed=0):
    """``runs`` learning rates from LogUniform(low, high): exp(U(log low, log high)), sorted ascending."""
    rng = np.random.Generator(np.random.PCG64([int(seed), 2016]))
    return np.sort(np.exp(rng.uniform(math.log(low), math.log(high), size=int(runs))))


@dataclass
class OptimizerRun:
    optimizer: str
    lr: float
    seed: int
    score: float              # mean return of the final greedy evaluation (nan if it diverged)
    status: str               # "finished", "diverged", "failed", ...
    seconds: float


@dataclass
class OptimizerSummary:
    optimizer: str
    runs: int
    solved: int               # runs whose score reached the threshold
    auc: float                # area under the sorted-score curve / (runs · threshold)
    mean_score: float         # diverged runs count as 0
    median_score: float
    lr_solved_min: float      # nan when no run reached the threshold
    lr_solved_max: float


@dataclass
class OptimizerResult:
    machine: dict
    settings: dict
    runs: list = field(default_factory=list)
    summary: list = field(default_factory=list)

    def to_dict(self):
        """A JSON-ready dict (nan scores of diverged runs become None)."""
        return json_ready(dict(benchmark="optimizers", machine=self.machine, settings=self.settings,
                               runs=[asdict(r) for r in self.runs], summary=[asdict(s) for s in self.summary]))


def run_config(algo, env, optimizer, lr, seed, threads=2, steps=None, eval_episodes=10, gym=False):
    """The preset configuration of one run with ``optimizer`` and learning rate ``lr``."""
    return resolve(dict(algo=algo, env=env, optimizer=optimizer, lr=float(lr), seed=int(seed), threads=threads,
                        steps=steps, gym=gym or None, eval_every=0, eval_episodes=eval_episodes, save_every=0,
                        log_interval=3600.0))


def train_once(algo, env, optimizer, lr, seed, threads=2, steps=None, eval_episodes=10, gym=False):
    """One preset run with ``optimizer`` and learning rate ``lr``; returns an :class:`OptimizerRun`."""
    config = run_config(algo, env, optimizer, lr, seed, threads, steps, eval_episodes, gym)
    result = Trainer(config, final_eval=True, run_dir=None).run()
    score = result.final_eval.mean if result.final_eval is not None else math.nan
    return OptimizerRun(optimizer=optimizer, lr=float(lr), seed=int(seed), score=float(score), status=result.status,
                        seconds=result.wall_time)


def summarize(optimizer, runs, threshold, floor=0.0):
    """Per-optimizer summary (see the module docstring); diverged runs score ``floor``."""
    scores = np.array([r.score if math.isfinite(r.score) else floor for r in runs], np.float64)
    solved = [r for r in runs if math.isfinite(r.score) and r.score >= threshold]
    # The sorted-score curve, best first; its area per run relative to the threshold.
    curve = np.sort(scores)[::-1]
    auc = float(np.mean(curve) / threshold) if len(curve) and threshold != 0 else math.nan
    return OptimizerSummary(
        optimizer=optimizer, runs=len(runs), solved=len(solved), auc=auc,
        mean_score=float(np.mean(scores)) if len(scores) else math.nan,
        median_score=float(np.median(scores)) if len(scores) else math.nan,
        lr_solved_min=min((r.lr for r in solved), default=math.nan),
        lr_solved_max=max((r.lr for r in solved), default=math.nan),
    )


def run(algo="a3c", env="CartPole-v1", optimizers=OPTIMIZERS, runs=20, lr_low=1e-4, lr_high=1e-2, seed=0,
        threads=2, steps=None, eval_episodes=10, threshold=None, gym=False, progress=None):
    """Train every optimizer with the same ``runs`` sampled learning rates; returns an :class:`OptimizerResult`."""
    say = progress or (lambda msg: None)
    if threshold is None:
        if env not in DEFAULT_THRESHOLDS:
            raise ValueError(f"there is no default threshold score for {env}; give one with --threshold")
        threshold = DEFAULT_THRESHOLDS[env]
    if not 0 < lr_low < lr_high:
        raise ValueError(f"the learning-rate range must satisfy 0 < low < high (got {lr_low:g}, {lr_high:g})")
    lrs = sample_learning_rates(runs, lr_low, lr_high, seed)
    for optimizer in optimizers:   # refuse a bad configuration before the first run, not in the middle
        Trainer(run_config(algo, env, optimizer, lr_high, seed, threads, steps, eval_episodes, gym))
    budget = resolve(dict(algo=algo, env=env, steps=steps)).steps
    result = OptimizerResult(machine=machine(), settings=dict(
        algo=algo, env=env, gym=bool(gym), optimizers=list(optimizers), runs=int(runs), lr_low=float(lr_low),
        lr_high=float(lr_high), seed=int(seed), threads=int(threads), steps=int(budget),
        eval_episodes=int(eval_episodes), threshold=float(threshold), learning_rates=[float(x) for x in lrs]))
    for optimizer in optimizers:
        mine = []
        for i, lr in enumerate(lrs):
            r = train_once(algo, env, optimizer, lr, seed + i, threads, steps, eval_episodes, gym)
            mine.append(r)
            say(f"{optimizer:>14}  run {i + 1:>2}/{len(lrs)}  lr {lr:.2e}: "
                + (f"score {r.score:.1f}" if math.isfinite(r.score) else r.status) + f"  ({r.seconds:.1f} s)")
        result.runs.extend(mine)
        result.summary.append(summarize(optimizer, mine, threshold))
    return result


def format_result(result):
    """Score against learning rate (one column per optimizer, rows sorted by lr), then the summary."""
    s = result.settings
    lines = machine_lines(result.machine)
    lines.append(f"optimizers: {s['algo']} on {s['env']}, {s['threads']} threads, {s['steps']:,} steps per run; "
                 f"{s['runs']} learning rates from LogUniform({s['lr_low']:g}, {s['lr_high']:g}) (seed {s['seed']}), "
                 f"the same for every optimizer; score = mean return of {s['eval_episodes']} greedy episodes")
    lines.append("")
    opts = s["optimizers"]
    by = {(r.optimizer, r.lr): r for r in result.runs}
    rows = []
    for lr in s["learning_rates"]:
        cells = [f"{lr:.2e}"]
        for o in opts:
            r = by.get((o, lr))
            cells.append("-" if r is None else (fmt(r.score, ".1f") if math.isfinite(r.score) else r.status))
        rows.append(cells)
    lines.append(table(["learning rate"] + opts, rows))
    lines.append("")
    lines.append(f"summary (threshold {s['threshold']:g}; AUC = area under the best-first sorted-score curve "
                 f"/ (runs x threshold), diverged runs count 0)")
    rows = []
    for m in result.summary:
        lr_range = "-" if not math.isfinite(m.lr_solved_min) else f"{m.lr_solved_min:.1e} .. {m.lr_solved_max:.1e}"
        rows.append([m.optimizer, f"{m.solved}/{m.runs}", fmt(m.auc, ".3f"), fmt(m.mean_score, ".1f"),
                     fmt(m.median_score, ".1f"), lr_range])
    lines.append(table(["optimizer", "solved", "AUC", "mean score", "median score", "lr range solved"], rows))
    return "\n".join(lines)


def plot(result, path):
    """Left: score against learning rate (log scale). Right: scores sorted best first, as in the paper."""
    from numba_a3c.benchmarks.report import require_matplotlib

    plt = require_matplotlib()
    s = result.settings
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for o in s["optimizers"]:
        runs = [r for r in result.runs if r.optimizer == o]
        scores = [r.score if math.isfinite(r.score) else 0.0 for r in runs]
        ax1.scatter([r.lr for r in runs], scores, label=o, s=14)
        ax2.plot(range(1, len(scores) + 1), sorted(scores, reverse=True), marker=".", label=o)
    ax1.set_xscale("log")
    ax1.set_xlim(s["lr_low"], s["lr_high"])
    ax1.minorticks_off()
    ax1.set_xlabel("learning rate")
    ax1.set_ylabel("final greedy score")
    ax2.set_xlabel("run (sorted by score)")
    ax2.xaxis.get_major_locator().set_params(integer=True)
    ax2.set_ylabel("final greedy score")
    for ax in (ax1, ax2):
        ax.axhline(s["threshold"], color="grey", linestyle=":")
    ax2.legend()
    fig.suptitle(f"asyncrl bench optimizers: {s['algo']} on {s['env']}, {s['runs']} learning rates each", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
