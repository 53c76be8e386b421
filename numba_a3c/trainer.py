"""A training run, from a configuration to trained parameters: config → network → workers → result.

:class:`Trainer` builds the network for the environment, the shared state and the worker
threads, compiles the kernels, then watches the run from the main thread: it collects finished
episodes, reports progress, starts periodic greedy evaluations beside the workers, and at the
end (budget reached, Ctrl-C, a failed worker or divergence) stops every thread and evaluates
the final parameters. It prints nothing itself; callers pass ``on_progress`` / ``on_eval``.
"""

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from numba_a3c.algorithms.state import (
    BUDGET_DONE,
    C_STOP,
    C_T,
    DIVERGED,
    TF_EPSILON,
    TF_LR,
    TI_EPISODES,
)
from numba_a3c.envs.registry import describe_env
from numba_a3c.evaluate import evaluate
from numba_a3c.nn.network import Network, atari_spec, mlp_spec, small_conv_spec
from numba_a3c.workers import ERROR, WorkerError, Workers, compile_kernels, new_shared_state

STATUS_NAMES = {0: "running", 1: "diverged", 2: "stopped", 3: "finished", 4: "failed"}


def network_spec(config, env_info):
    """The network a configuration asks for on an environment (Q heads for the Q methods)."""
    heads = "actor_critic" if config.algo == "a3c" else "q"
    A = env_info.n_actions
    if config.network == "atari":
        if tuple(env_info.obs_shape) != (4, 84, 84):
            raise ValueError(f"the atari network needs 4x84x84 frames; {env_info.env_id} gives {env_info.obs_shape}")
        return atari_spec(A, heads)
    if config.network == "conv":
        if len(env_info.obs_shape) != 3:
            raise ValueError(f"the conv network needs (channels, height, width) observations; "
                             f"{env_info.env_id} gives {env_info.obs_shape}. Use --network mlp")
        return small_conv_spec(env_info.obs_shape, A, heads, hidden=config.hidden[0] if config.hidden else 128)
    spec = mlp_spec(int(np.prod(env_info.obs_shape)), A, config.hidden, config.activation, heads)
    if env_info.input_scale != 1.0:
        spec = type(spec)(spec.input_shape, spec.n_actions, spec.body, spec.heads, env_info.input_scale)
    return spec


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


@dataclass
class Evaluation:
    steps: int
    wall_time: float
    returns: np.ndarray

    @property
    def mean(self):
        return float(np.mean(self.returns))

    def row(self):
        r = self.returns
        return (self.steps, float(r.mean()), float(r.std()), float(r.min()), float(r.max()), len(r), self.wall_time)


@dataclass
class RunResult:
    status: str               # "finished", "stopped" (interrupted), "diverged" or "failed"
    steps: int
    wall_time: float
    steps_per_s: float
    episodes: int
    final_eval: Evaluation | None
    error: str = ""
    evaluations: list = field(default_factory=list)


class Trainer:
    """One training run. ``run()`` blocks until it ends and returns a :class:`RunResult`."""

    def __init__(self, config, on_progress=None, on_eval=None, final_eval=True):
        self.config = config
        self.env_info = describe_env(config.env, force_gym=config.gym)
        self.network = Network(network_spec(config, self.env_info))
        self.shared = new_shared_state(config, self.network)
        self.on_progress = on_progress
        self.on_eval = on_eval
        self.final_eval = final_eval
        self.episode_rows = []      # (global step, thread, return, length, wall time)
        self.evaluations = []       # Evaluation
        self.wall_time_before = 0.0  # wall time of earlier sessions of a resumed run
        self._seen = np.zeros(self.shared.n_threads, np.int64)
        self._recent = deque(maxlen=100)
        self._eval_thread = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ pieces
    def drain_episodes(self, wall):
        """Move newly finished episodes from the workers' ring buffers into ``episode_rows``."""
        log = self.shared.episode_log
        cap = log.shape[1]
        counts = self.shared.thread_i[:, TI_EPISODES].copy()
        for k in range(len(counts)):
            first = max(int(self._seen[k]), int(counts[k]) - cap)
            for idx in range(first, int(counts[k])):
                T, ret, length = log[k, idx % cap]
                self.episode_rows.append((int(T), k, float(ret), int(length), wall))
                self._recent.append(float(ret))
            self._seen[k] = counts[k]

    def evaluate_now(self, params, steps, wall):
        returns, _ = evaluate(self.network, params, self.env_info, episodes=self.config.eval_episodes,
                              seed=self.config.seed + 7919 * (len(self.evaluations) + 1))
        ev = Evaluation(steps, wall, returns)
        with self._lock:
            self.evaluations.append(ev)
        if self.on_eval is not None:
            self.on_eval(ev)
        return ev

    def _start_eval(self, steps, wall):
        snapshot = self.shared.theta.copy()
        self._eval_thread = threading.Thread(target=self.evaluate_now, args=(snapshot, steps, wall),
                                             name="asyncrl-eval", daemon=True)
        self._eval_thread.start()

    def progress(self, elapsed, steps_at_start):
        T = int(self.shared.counters[C_T])
        eps = self.shared.thread_f[:, TF_EPSILON]
        return Progress(
            steps=T,
            budget=self.config.steps,
            elapsed=elapsed,
            steps_per_s=(T - steps_at_start) / elapsed if elapsed > 0 else 0.0,
            episodes=int(self.shared.thread_i[:, TI_EPISODES].sum()),
            recent_return=float(np.mean(self._recent)) if self._recent else math.nan,
            epsilon=float(eps.mean()) if self.config.algo != "a3c" else math.nan,
            lr=float(self.shared.thread_f[:, TF_LR].max()),
        )

    # ------------------------------------------------------------------ the run
    def run(self, fresh=True):
        config = self.config
        compile_kernels(config, self.network, self.env_info)
        workers = Workers(self.shared, self.network, self.env_info, config)
        workers.reset_environments(fresh=fresh)
        steps_at_start = int(self.shared.counters[C_T])
        next_eval = self._next_multiple(steps_at_start, config.eval_every)
        t0 = time.monotonic()
        next_log = t0 + config.log_interval
        interrupted = False
        workers.start()
        try:
            while workers.alive():
                time.sleep(0.02)
                now = time.monotonic()
                wall = self.wall_time_before + now - t0
                self.drain_episodes(wall)
                T = int(self.shared.counters[C_T])
                if next_eval and T >= next_eval and T < config.steps:
                    if self._eval_thread is None or not self._eval_thread.is_alive():
                        self._start_eval(T, wall)
                    next_eval = self._next_multiple(T, config.eval_every)
                if now >= next_log and self.on_progress is not None:
                    self.on_progress(self.progress(now - t0, steps_at_start))
                    next_log = now + config.log_interval
                self.on_tick(T, wall)
        except KeyboardInterrupt:
            interrupted = True
            self.shared.counters[C_STOP] = 1
        workers.join()
        workers.close()
        elapsed = time.monotonic() - t0
        wall = self.wall_time_before + elapsed
        self.drain_episodes(wall)
        if self._eval_thread is not None:
            self._eval_thread.join()
        T = int(self.shared.counters[C_T])
        status = workers.status
        error = ""
        if workers.errors:
            k, exc = workers.errors[0]
            error = str(WorkerError(k, exc))
            status = ERROR
        elif status == DIVERGED:
            error = (f"training diverged at step {T:,}: a loss or gradient became NaN or Inf. "
                     f"Try a lower learning rate (--lr {config.lr / 3:.2g}) or a smaller --clip-norm.")
        name = "stopped" if interrupted else STATUS_NAMES.get(status, "finished")
        if status == BUDGET_DONE:
            name = "finished"
        final = None
        if self.final_eval and status not in (DIVERGED, ERROR) and not interrupted:
            final = self.evaluate_now(self.shared.theta.copy(), T, wall)
        self.wall_time_before = wall
        return RunResult(status=name, steps=T, wall_time=wall,
                         steps_per_s=(T - steps_at_start) / elapsed if elapsed > 0 else 0.0,
                         episodes=int(self.shared.thread_i[:, TI_EPISODES].sum()), final_eval=final, error=error,
                         evaluations=list(self.evaluations))

    def on_tick(self, steps, wall):
        """Called by the monitor loop about 50 times a second (checkpointing hooks in here)."""

    @staticmethod
    def _next_multiple(T, every):
        if not every:
            return 0
        return (T // every + 1) * every
