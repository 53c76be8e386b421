"""Progress reports: what the monitor hands ``on_progress`` every ``log_interval`` seconds.

:func:`progress_report` reads the shared counters and per-thread rows without locks (the workers
keep writing them; a report is a snapshot, each number read once) and the monitor's recent
returns. Called in the monitor thread.
"""

import math
from dataclasses import dataclass

import numpy as np

from numba_a3c.algorithms.state import C_T, TF_ENTROPY, TF_EPSILON, TF_LR, TI_EPISODES


@dataclass
class Progress:
    """One progress report."""

    steps: int
    budget: int
    elapsed: float
    steps_per_s: float
    episodes: int
    recent_return: float      # mean return of the last 100 finished episodes (nan before any)
    epsilon: float            # mean current ε over threads (nan for A3C)
    lr: float
    entropy: float            # A3C: mean policy entropy H(π) per step of the threads' last segments (nan otherwise)


def progress_report(shared, config, recent, elapsed, steps_at_start):
    """The :class:`Progress` of a session ``elapsed`` seconds old that began at ``steps_at_start``
    global steps; ``recent`` holds the last returns."""
    T = int(shared.counters[C_T])
    a3c = config.algo == "a3c"
    return Progress(
        steps=T,
        budget=config.steps,
        elapsed=elapsed,
        steps_per_s=(T - steps_at_start) / elapsed if elapsed > 0 else 0.0,
        episodes=int(shared.thread_i[:, TI_EPISODES].sum()),
        recent_return=float(np.mean(recent)) if recent else math.nan,
        epsilon=float(shared.thread_f[:, TF_EPSILON].mean()) if not a3c else math.nan,
        lr=float(shared.thread_f[:, TF_LR].max()),
        entropy=float(shared.thread_f[:, TF_ENTROPY].mean()) if a3c else math.nan,
    )
