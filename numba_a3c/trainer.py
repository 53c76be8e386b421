"""A training run, from a configuration to trained parameters: config → network → workers → result.

:class:`Trainer` builds the network for the environment, the shared state and the worker
threads, compiles the kernels, then watches the run from the main thread: it collects finished
episodes, reports progress, starts periodic greedy evaluations beside the workers, and at the
end (budget reached, Ctrl-C, a failed worker or divergence) stops every thread and evaluates
the final parameters. It prints nothing itself; callers pass ``on_progress`` / ``on_eval``.

Faults (see docs/robustness.md)
    * A worker that raises (its environment's ``step`` included) raises the shared stop flag; the
      other workers end their segment, ``latest.h5`` is saved and the run ends "failed" with the
      thread, the exception and where it was raised.
    * Divergence: a learner that computes a non-finite loss or gradient norm stops the run on
      that very update; the monitor also checks θ itself every ``THETA_CHECK_INTERVAL`` seconds
      (a NaN weight behind a dead ReLU shows in no loss) and every finished episode's return.
      The last good ``latest.h5`` is kept; the diverged state goes to ``diverged.h5``.
    * :meth:`Trainer.request_stop` (the CLI calls it on Ctrl-C / SIGTERM) stops the workers at
      their next step; the run saves and ends "stopped".
    * Nothing waits forever: workers get ``STOP_TIMEOUT`` seconds to stop once the stop flag is
      up, and ``END_TIMEOUT`` seconds to finish once another worker has ended (budget, pause); a
      Python environment blocked in ``step`` is then left behind, the run ends "failed" and its
      checkpoint is a snapshot rather than a state at rest. A periodic evaluation still running
      at a stop gets ``STOP_TIMEOUT`` too, and the final evaluation is abandoned on a stop.
"""

import dataclasses
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_a3c.algorithms.state import (
    BUDGET_DONE,
    C_PAUSE_AT,
    C_STATUS,
    C_STOP,
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    CI_BUDGET,
    DIVERGED,
    ERROR,
    NEVER,
    STATUS_NAMES,
    STOPPED,
    TF_ENTROPY,
    TF_EPSILON,
    TF_GRAD_NORM,
    TF_LOSS,
    TF_LR,
    TI_EPISODES,
)
from numba_a3c.build import build_run
from numba_a3c.episode_log import FLUSH_SECONDS
from numba_a3c.evaluate import evaluate
from numba_a3c.workers import (
    WorkerError,
    Workers,
    compile_kernels,
    describe_exception,
)

STOP_TIMEOUT = 2.0            # seconds workers (and an evaluation) get to stop once asked
END_TIMEOUT = 10.0            # seconds the other workers get to finish once one has ended (budget, pause)
THETA_CHECK_INTERVAL = 0.1    # seconds between the monitor's checks that θ is finite
SAVE_SECONDS = 60.0           # a run with a run directory saves latest.h5 at least this often (wall time)

# Settings a resumed run may change: they do not alter what is learned (steps extends the budget).
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_episodes", "save_every", "log_interval")


class EpisodeRows:
    """The finished episodes of a run still in memory, as rows (global step, thread, return,
    length, wall time).

    Reads like a list of tuples (``len``, indexing, slicing, iteration) but keeps the rows in
    one float64 array (40 bytes an episode; a list of tuples takes about 200). ``first`` is the
    index in the run's whole log of the first row held: a run with a run directory writes its
    rows to episodes.csv and then keeps only the last ones (:meth:`discard_head`), so its memory
    does not grow with the run. Written by the monitor thread only; a reader in another thread
    (the evaluation thread's save of best.h5) takes the lock and gets a consistent copy.
    """

    COLUMNS = 5

    def __init__(self, rows=(), first=0):
        self._a = np.zeros((1024, self.COLUMNS), np.float64)
        self._n = 0
        self.first = first
        self._lock = threading.Lock()
        self.extend(rows)

    @staticmethod
    def _row(r):
        return (int(r[0]), int(r[1]), float(r[2]), int(r[3]), float(r[4]))

    def __len__(self):
        return self._n

    @property
    def total(self):
        """Rows in the run's whole log so far (those discarded included)."""
        return self.first + self._n

    def __getitem__(self, i):
        rows = self.array()
        if isinstance(i, slice):
            return [self._row(r) for r in rows[i].tolist()]
        return self._row(rows[i].tolist())

    def __iter__(self):
        for r in self.array().tolist():
            yield self._row(r)

    def _reserve(self, extra):
        need = self._n + extra
        if need > self._a.shape[0]:
            grown = np.zeros((max(need, 2 * self._a.shape[0]), self.COLUMNS), np.float64)
            grown[:self._n] = self._a[:self._n]
            self._a = grown

    def append(self, row):
        with self._lock:
            self._reserve(1)
            self._a[self._n] = row
            self._n += 1

    def extend(self, rows):
        data = np.asarray(rows, np.float64).reshape(-1, self.COLUMNS)
        with self._lock:
            self._reserve(len(data))
            self._a[self._n:self._n + len(data)] = data
            self._n += len(data)

    def array(self):
        """A copy of the rows held as an (n, 5) float64 array."""
        with self._lock:
            return self._a[:self._n].copy()

    def snapshot(self):
        """(``first``, a copy of the rows held), consistent with each other."""
        with self._lock:
            return self.first, self._a[:self._n].copy()

    def since(self, index):
        """A copy of the rows from whole-log index ``index`` on."""
        with self._lock:
            return self._a[max(0, index - self.first):self._n].copy()

    def discard_head(self, keep, written):
        """Forget the rows before the last ``keep``, but none at or after whole-log index
        ``written`` (rows not yet in episodes.csv). The buffer shrinks back when it can."""
        with self._lock:
            drop = min(self._n - keep, written - self.first)
            if drop <= 0:
                return
            rest = self._n - drop
            size = max(1024, 2 * rest)
            a = np.zeros((size, self.COLUMNS), np.float64) if size < self._a.shape[0] else self._a
            a[:rest] = self._a[drop:self._n]
            self._a, self._n = a, rest
            self.first += drop

    def __array__(self, dtype=None, copy=None):
        a = self.array()
        return a if dtype is None else a.astype(dtype)


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
    status: str               # "finished", "stopped" (Ctrl-C / SIGTERM), "paused" (stop_at), "diverged", "failed"
    steps: int
    wall_time: float
    steps_per_s: float
    episodes: int
    final_eval: Evaluation | None
    error: str = ""
    evaluations: list = field(default_factory=list)


class Trainer:
    """One training run. ``run()`` blocks until it ends and returns a :class:`RunResult`.

    With a ``run_dir``, the run keeps there: ``latest.h5`` (every ``save_seconds`` of wall time,
    every ``save_every`` steps and at the end, also after Ctrl-C or a failed worker), ``best.h5``
    (the parameters of the best evaluation so far), ``episodes.csv`` (appended, see
    :mod:`numba_a3c.episode_log`) and ``evaluations.csv``. After a divergence the last good
    ``latest.h5`` is kept and the diverged state goes to ``diverged.h5`` for inspection.

    Threads: the monitor (the thread that calls ``run()``) owns ``episode_rows``' writes,
    episodes.csv, the periodic saves and the counters it reads; the evaluation thread only reads
    a consistent copy of the episode rows and ``_csv_mark`` to write best.h5.
    """

    def __init__(self, config, on_progress=None, on_eval=None, final_eval=True, run_dir=None, parts=None,
                 save_seconds=SAVE_SECONDS):
        from numba_a3c.validation import check_config

        check_config(config)
        if parts is None:
            parts = build_run(config)   # callers that checked the configuration pass the parts they built
        elif parts.config != config:
            raise ValueError("the run's parts were built for another configuration")
        self.config = config
        self.env_info = parts.env_info
        self.network = parts.network
        self.shared = parts.initial_state()
        self.on_progress = on_progress
        self.on_eval = on_eval
        self.final_eval = final_eval
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.episode_rows = EpisodeRows()  # (global step, thread, return, length, wall time)
        self.evaluations = []       # Evaluation objects of this session
        self.eval_rows = []         # every evaluation of the run, as checkpoint rows
        self.wall_time_before = 0.0  # wall time of earlier sessions of a resumed run
        self.resumed_consistent = False  # resumed from a checkpoint taken with every thread at rest
        self.best_mean = -math.inf
        self._seen = np.zeros(self.shared.n_threads, np.int64)
        self._recent = deque(maxlen=100)
        self._eval_thread = None
        self._eval_error = None      # (exception, where) of a failed periodic evaluation
        self._lock = threading.Lock()
        self._next_save = 0
        self._stop_requested = False
        self._closed = False         # set when a run ends: a late evaluation must not write files
        self._fault = ""             # a fault the monitor found (a failed save or evaluation)
        self._divergence = ""        # what the monitor found non-finite
        self.last_good_save = None   # (path, global step) of the last latest.h5 written
        self.episodes_dropped = 0    # finished episodes missing from the logs (ring buffer overrun)
        self.end_timeout = END_TIMEOUT
        self.save_seconds = float(save_seconds or 0.0)   # 0: no saves by wall time
        self._next_save_time = math.inf
        self._csv = None             # the open episodes.csv (EpisodeCsv) while a run with a run_dir runs
        self._csv_mark = (0, 0)      # (whole-log rows, bytes) in episodes.csv: both read in one go
        self._resume_log = None      # (episodes.csv beside the checkpoint resumed, rows, bytes)
        self.log_warning = ""        # a problem with the episode log of a resumed run

    @classmethod
    def from_checkpoint(cls, path, changes=None, **kwargs):
        """A trainer that continues the run saved in ``path``.

        ``changes`` may only touch settings that do not alter the learning itself (see
        :data:`RESUMABLE_CHANGES`) or extend the budget; anything else raises ValueError.
        """
        from numba_a3c import checkpoint

        ckpt = checkpoint.load(path, whole_log=False)   # the log's tail: episodes.csv keeps the rest
        config = ckpt.config
        changes = {k: v for k, v in (changes or {}).items() if v is not None}
        refused = sorted(k for k, v in changes.items() if k not in RESUMABLE_CHANGES and getattr(config, k) != v)
        if refused:
            pairs = ", ".join(f"--{k.replace('_', '-')} (checkpoint: {getattr(config, k)}, given: {changes[k]})"
                              for k in refused)
            raise ValueError(f"cannot resume with options that contradict the checkpoint: {pairs}; drop them or "
                             f"start a new run")
        if "steps" in changes and changes["steps"] < ckpt.global_step:
            raise ValueError(f"--steps {changes['steps']} is below the {ckpt.global_step:,} steps already done")
        config = config.replace(**changes)
        trainer = cls(config, **kwargs)
        trainer.restore(ckpt)
        trainer._resume_log = (Path(path).parent / "episodes.csv", int(ckpt.attrs.get("csv_rows", 0)),
                               int(ckpt.attrs.get("csv_bytes", 0)))
        return trainer

    def restore(self, ckpt):
        """Load a checkpoint's parameters, optimiser state, counters, RNGs and logs into this run."""
        sh = self.shared
        if not (np.isfinite(ckpt.theta).all() and np.isfinite(ckpt.opt_shared).all()
                and np.isfinite(ckpt.opt_private).all()):
            raise ValueError("the checkpoint holds NaN or Inf parameters (a diverged state, e.g. diverged.h5); "
                             "resume from latest.h5 or best.h5 instead")
        if ckpt.thread_i.shape[0] != sh.n_threads:
            raise ValueError("the checkpoint was written by a run with a different number of threads")
        sh.theta[:] = ckpt.theta
        if ckpt.theta_target is not None:
            sh.theta_target[:] = ckpt.theta_target
        sh.opt_shared[:] = ckpt.opt_shared
        sh.opt_private[:] = ckpt.opt_private
        for k in (C_T, C_TARGET_NEXT, C_TARGET_UPDATES):
            sh.counters[k] = ckpt.counters[k]
        sh.thread_i[:] = ckpt.thread_i
        sh.thread_f[:] = ckpt.thread_f
        sh.rng[:] = ckpt.rng
        sh.env_rng[:] = ckpt.env_rng
        sh.env_state[:] = ckpt.env_state
        sh.obs[:, 0] = ckpt.observation
        sh.config_i[CI_BUDGET] = self.config.steps
        self.episode_rows = EpisodeRows(ckpt.episodes, first=int(ckpt.attrs.get("log_first_row", 0)))
        self._recent.extend(r[2] for r in self.episode_rows[-100:])
        self.eval_rows = [tuple(r) for r in ckpt.evaluations.tolist()]
        self.best_mean = max((float(r[1]) for r in ckpt.evaluations), default=-math.inf)
        self.wall_time_before = ckpt.wall_time
        self._seen = sh.thread_i[:, TI_EPISODES].copy()
        self.resumed_consistent = bool(ckpt.attrs.get("at_rest", False))

    # ------------------------------------------------------------------ pieces
    def drain_episodes(self, wall):
        """Move newly finished episodes from the workers' ring buffers into ``episode_rows``."""
        log = self.shared.episode_log
        cap = log.shape[1]
        counts = self.shared.thread_i[:, TI_EPISODES].copy()
        for k in range(len(counts)):
            first = max(int(self._seen[k]), int(counts[k]) - cap)
            # A thread that finished more than `cap` episodes since the last drain (the monitor was
            # held up, e.g. by a slow disk) has overwritten the oldest ones: count them.
            self.episodes_dropped += first - int(self._seen[k])
            for idx in range(first, int(counts[k])):
                T, ret, length = log[k, idx % cap]
                if not math.isfinite(ret) and not self._divergence:
                    self._divergence = (f"thread {k}'s episode ending at step {int(T):,} returned {ret} "
                                        f"(the environment's rewards, or values learned from them, are not finite)")
                    self.shared.counters[C_STATUS] = DIVERGED
                    self.shared.counters[C_STOP] = 1
                self.episode_rows.append((int(T), k, float(ret), int(length), wall))
                self._recent.append(float(ret))
            self._seen[k] = counts[k]

    def evaluate_now(self, params, steps, wall, report=True):
        eps = self.config.eval_epsilon
        returns, _ = evaluate(self.network, params, self.env_info, episodes=self.config.eval_episodes,
                              mode="epsilon" if eps > 0 else "greedy", epsilon=eps,
                              seed=self.config.seed + 7919 * (len(self.eval_rows) + 1))
        ev = Evaluation(steps, wall, returns)
        with self._lock:
            if self._closed:          # the run ended without waiting for this evaluation
                return ev
            self.evaluations.append(ev)
            self.eval_rows.append(ev.row())
            if self.run_dir is not None and ev.mean > self.best_mean:
                self.best_mean = ev.mean
                self.save(self.run_dir / "best.h5", theta=params)
        if report and self.on_eval is not None:
            self.on_eval(ev)
        return ev

    # ------------------------------------------------------------------ files
    def save(self, path, theta=None, at_rest=False):
        """Write a checkpoint of the run's current state (``theta`` replaces θ when given)."""
        from numba_a3c import checkpoint

        shared = self.shared if theta is None else dataclasses.replace(self.shared, theta=theta)
        first, rows = self.episode_rows.snapshot()
        csv_rows, csv_bytes = self._csv_mark
        evals = list(self.eval_rows)
        return checkpoint.save(path, config=self.config, network=self.network, shared=shared, episodes=rows,
                               evaluations=evals, wall_time=self.wall_time_before + self._elapsed(),
                               at_rest=at_rest,
                               log_attrs=dict(log_first_row=first, csv_rows=csv_rows, csv_bytes=csv_bytes))

    def write_logs(self):
        """Append the new episodes to episodes.csv; rewrite evaluations.csv (a few rows) atomically."""
        from numba_a3c.checkpoint import EVALUATION_COLUMNS, write_csv

        self.flush_episodes()
        write_csv(self.run_dir / "evaluations.csv", EVALUATION_COLUMNS, self.eval_rows)

    def _open_episode_csv(self):
        """Start episodes.csv for this session: a new one, or a resumed run's log cut to its checkpoint."""
        from numba_a3c.episode_log import EpisodeCsv

        if self.run_dir is None or self._csv is not None:
            return
        if self._csv_mark[1]:     # a later run() of this trainer (after stop_at): go on appending
            self._csv = EpisodeCsv(self.run_dir / "episodes.csv", self._csv_mark[1])
            return
        source, rows, size = self._resume_log or (None, 0, 0)
        if size:
            self._csv, self.log_warning = EpisodeCsv.start(self.run_dir / "episodes.csv", source=source,
                                                           source_bytes=size, rows=self.episode_rows.array())
            written = rows if not self.log_warning else self.episode_rows.total
        else:   # a new run, or a checkpoint that holds its whole log (format 1 before episodes.csv was appended)
            self._csv, _ = EpisodeCsv.start(self.run_dir / "episodes.csv", rows=self.episode_rows.array())
            written = self.episode_rows.total
        self._csv_mark = (written, self._csv.size)

    def flush_episodes(self):
        """Monitor thread: append the episodes not yet in episodes.csv, then forget all but the last
        ``TAIL`` rows, so memory does not grow with the run."""
        from numba_a3c.episode_log import TAIL

        if self.run_dir is None:
            return
        self._open_episode_csv()
        written = self._csv_mark[0]
        rows = self.episode_rows.since(written)
        size = self._csv.append(rows)
        self._csv_mark = (written + len(rows), size)
        self.episode_rows.discard_head(TAIL, written + len(rows))

    def _close_episode_csv(self):
        if self._csv is not None:
            self._csv.close()
            self._csv = None

    def _elapsed(self):
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def _start_eval(self, steps, wall):
        snapshot = self.shared.theta.copy()
        self._eval_thread = threading.Thread(target=self._guarded_eval, args=(snapshot, steps, wall),
                                             name="asyncrl-eval", daemon=True)
        self._eval_thread.start()

    def _guarded_eval(self, snapshot, steps, wall):
        """A periodic evaluation, in its own thread: a failure stops the run instead of vanishing."""
        try:
            self.evaluate_now(snapshot, steps, wall)
        except BaseException as exc:  # noqa: BLE001 - reported by the monitor, which stops the run
            self._eval_error = exc
            self.shared.counters[C_STOP] = 1

    def request_stop(self):
        """Ask a running ``run()`` to stop: workers end at their next step, the run saves and
        returns "stopped". Safe to call from a signal handler or another thread."""
        self._stop_requested = True
        self.shared.counters[C_STOP] = 1

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
            entropy=float(self.shared.thread_f[:, TF_ENTROPY].mean()) if self.config.algo == "a3c" else math.nan,
        )

    # ------------------------------------------------------------------ the run
    _t0 = None

    def run(self, stop_at=None):
        """Train until the budget is spent (or ``stop_at`` global steps, at a segment boundary).

        Ends early, always with every thread stopped (or given up on after ``STOP_TIMEOUT``) and
        the run saved, on :meth:`request_stop` or Ctrl-C ("stopped"), a worker's exception or a
        failed save ("failed"), or divergence ("diverged"). A second KeyboardInterrupt (or any
        other exception) during that shutdown propagates; checkpoints already on disk stay intact
        because every save is atomic.
        """
        config = self.config
        compile_kernels(config, self.network, self.env_info)
        workers = Workers(self.shared, self.network, self.env_info, config)
        try:
            workers.reset_environments(fresh=not self.resumed_consistent)
        except Exception as exc:  # noqa: BLE001 - an environment that cannot start ends the run, plainly
            self._close_envs(workers)
            return RunResult(status="failed", steps=int(self.shared.counters[C_T]), wall_time=self.wall_time_before,
                             steps_per_s=0.0, episodes=int(self.shared.thread_i[:, TI_EPISODES].sum()),
                             final_eval=None, error="could not start the environments: " + describe_exception(exc))
        counters = self.shared.counters
        counters[C_STOP] = 1 if self._stop_requested else 0
        counters[C_STATUS] = 0
        counters[C_PAUSE_AT] = NEVER if stop_at is None else int(stop_at)
        self._closed = False
        self._fault = self._divergence = ""
        self._eval_error = None
        steps_at_start = int(counters[C_T])
        next_eval = self._next_multiple(steps_at_start, config.eval_every)
        self._next_save = self._next_multiple(steps_at_start, config.save_every)
        t0 = self._t0 = time.monotonic()
        self._next_save_time = t0 + self.save_seconds if self.save_seconds else math.inf
        next_flush = t0 + FLUSH_SECONDS
        next_log = t0 + config.log_interval
        next_theta_check = t0 + THETA_CHECK_INTERVAL
        interrupted = False
        stop_since = None
        workers.start()
        try:
            while workers.alive():
                time.sleep(0.02)
                now = time.monotonic()
                wall = self.wall_time_before + now - t0
                self.drain_episodes(wall)
                if now >= next_theta_check:
                    self._check_finite()
                    next_theta_check = now + THETA_CHECK_INTERVAL
                if now >= next_flush:
                    self._flush_or_fail()
                    next_flush = now + FLUSH_SECONDS
                if self._eval_error is not None and not self._fault:
                    self._fault = "the periodic evaluation failed: " + describe_exception(self._eval_error)
                asked = bool(counters[C_STOP])
                if asked or not all(t.is_alive() for t in workers.threads):
                    # Ending (stop flag, or a worker is done: budget, pause, failure): no new
                    # evaluations or saves; the others get STOP_TIMEOUT (asked) or END_TIMEOUT
                    # seconds, then the run ends without them (a thread blocked in its environment).
                    stop_since = now if stop_since is None else stop_since
                    if now - stop_since > (STOP_TIMEOUT if asked else self.end_timeout):
                        counters[C_STOP] = 1
                        break
                    continue
                T = int(counters[C_T])
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
            counters[C_STOP] = 1
            workers.join(timeout=STOP_TIMEOUT)
        except BaseException:
            # Anything else in the monitor (a callback raising, a second signal): stop the
            # workers, briefly wait for them, and let it propagate.
            counters[C_STOP] = 1
            self._closed = True
            workers.join(timeout=STOP_TIMEOUT)
            raise
        stuck = workers.join(timeout=0.0 if stop_since is not None or interrupted else None) is False
        stuck_threads = [k for k, t in enumerate(workers.threads) if t.is_alive()]
        if not stuck:
            self._close_envs(workers)
        elapsed = time.monotonic() - t0
        wall = self.wall_time_before + elapsed
        self.drain_episodes(wall)
        self._check_finite()
        self._finish_eval(wait=not (interrupted or self._stop_requested or counters[C_STATUS]))
        self._t0 = None
        self.wall_time_before = wall
        T = int(counters[C_T])
        status = workers.status
        interrupted = interrupted or self._stop_requested
        errors = []
        if workers.errors:
            k, exc = workers.errors[0]
            errors.append(str(WorkerError(k, exc)))
            if len(workers.errors) > 1:
                others = sorted({j for j, _ in workers.errors[1:]})
                errors[-1] += f" (threads {', '.join(map(str, others))} failed too)"
            status = ERROR
        if self._fault:
            errors.append(self._fault)
            if status != DIVERGED:
                status = ERROR
        if status == DIVERGED and not workers.errors:
            errors.append(self._divergence_message(T))
        if stuck_threads:
            waited = STOP_TIMEOUT if (interrupted or self._stop_requested) else self.end_timeout
            errors.append(f"worker thread(s) {', '.join(map(str, stuck_threads))} did not stop within "
                          f"{waited:g} s (blocked in the environment?); the checkpoint is a snapshot taken "
                          f"while they ran")
            if status not in (ERROR, DIVERGED):
                status = ERROR
        if status == ERROR or status == DIVERGED:
            name = STATUS_NAMES[status]
        elif interrupted:
            name = "stopped"
        elif status == STOPPED:
            name = "paused"
        else:
            name = STATUS_NAMES.get(status, "finished")
        final = None
        if self.final_eval and status == BUDGET_DONE and not interrupted and not errors:
            final, problem = self._final_evaluation(T, wall)
            if problem:
                errors.append(problem)
        with self._lock:
            self._closed = True
        if self.run_dir is not None:
            try:
                self.flush_episodes()
                self._save_at_end(status, at_rest=not stuck_threads)
                self.write_logs()
            except OSError as exc:
                errors.append(f"could not write the run directory {self.run_dir}: {exc}")
                if name not in ("failed", "diverged"):
                    name = "failed"
            finally:
                self._close_episode_csv()
        return RunResult(status=name, steps=T, wall_time=wall,
                         steps_per_s=(T - steps_at_start) / elapsed if elapsed > 0 else 0.0,
                         episodes=int(self.shared.thread_i[:, TI_EPISODES].sum()), final_eval=final,
                         error="; ".join(errors), evaluations=list(self.evaluations))

    # ------------------------------------------------------------------ fault handling
    def _check_finite(self):
        """Stop the run as diverged if θ holds a NaN or Inf (the learners see only losses and
        gradients; a NaN weight feeding a dead ReLU shows in neither)."""
        if not self._divergence and not np.isfinite(self.shared.theta).all():
            bad = int(np.size(self.shared.theta) - np.isfinite(self.shared.theta).sum())
            self._divergence = f"{bad:,} of the {self.network.n_params:,} parameters became NaN or Inf"
            self.shared.counters[C_STATUS] = DIVERGED
            self.shared.counters[C_STOP] = 1

    def _divergence_message(self, T):
        tf = self.shared.thread_f
        found = [f"thread {k}'s loss became {tf[k, TF_LOSS]:g} (gradient norm {tf[k, TF_GRAD_NORM]:g})"
                 for k in range(tf.shape[0])
                 if not (math.isfinite(tf[k, TF_LOSS]) and math.isfinite(tf[k, TF_GRAD_NORM]))][:2]
        if self._divergence:
            found.append(self._divergence)
        found = "; ".join(found) or "a loss or gradient became NaN or Inf"
        keep = (f"the last good checkpoint {self.last_good_save[0]} (step {self.last_good_save[1]:,}) is kept"
                if self.last_good_save else "no checkpoint was saved before it (use --save-every to keep one)")
        return (f"training diverged at step {T:,}: {found}. Try a lower learning rate (a new run with "
                f"--lr {self.config.lr / 3:.2g}) or a smaller --clip-norm; {keep}")

    def _finish_eval(self, wait):
        """Wait for a periodic evaluation still running (at most STOP_TIMEOUT when stopping)."""
        t = self._eval_thread
        if t is None:
            return
        if wait:
            while t.is_alive() and not self._stop_requested:
                t.join(0.1)
        t.join(STOP_TIMEOUT)
        with self._lock:
            self._closed = t.is_alive()   # a late evaluation must not write best.h5 any more
        if self._eval_error is not None and not self._fault:
            self._fault = "the periodic evaluation failed: " + describe_exception(self._eval_error)

    def _final_evaluation(self, T, wall):
        """The final greedy evaluation, in a thread the main thread waits on, so that a stop
        request (or Ctrl-C) during a long one (Atari) abandons it instead of delaying the save.
        Returns (Evaluation or None, a problem to report or "")."""
        box = {}

        def target():
            try:
                box["ev"] = self.evaluate_now(self.shared.theta.copy(), T, wall, report=False)
            except BaseException as exc:  # noqa: BLE001 - reported as the run's error
                box["error"] = exc

        t = threading.Thread(target=target, name="asyncrl-final-eval", daemon=True)
        t.start()
        try:
            while t.is_alive() and not self._stop_requested:
                t.join(0.1)
        except KeyboardInterrupt:
            self._stop_requested = True
        if t.is_alive():
            return None, ""
        if "error" in box:
            return None, "the final evaluation failed: " + describe_exception(box["error"])
        return box.get("ev"), ""

    @staticmethod
    def _close_envs(workers):
        try:
            workers.close()
        except Exception:  # noqa: BLE001 - a failing env.close() must not lose the checkpoint
            pass

    def _save_at_end(self, status, at_rest):
        """latest.h5 unless θ is not finite (then diverged.h5, keeping the last good latest.h5)."""
        finite = bool(np.isfinite(self.shared.theta).all())
        if status == DIVERGED or not finite:
            self.save(self.run_dir / "diverged.h5", at_rest=at_rest)
        else:
            self.save(self.run_dir / "latest.h5", at_rest=at_rest)
            self.last_good_save = (self.run_dir / "latest.h5", int(self.shared.counters[C_T]))

    def on_tick(self, steps, wall):
        """Called by the monitor loop about 50 times a second: periodic checkpoints, every
        ``save_every`` steps and every ``save_seconds`` of wall time.

        A checkpoint is written only from finite parameters; a failed write (disk full, directory
        removed) stops the run as failed rather than training on without a way to resume.
        """
        if self.run_dir is None:
            return
        now = time.monotonic()
        if not ((self._next_save and steps >= self._next_save) or now >= self._next_save_time):
            return
        theta = self.shared.theta.copy()
        if np.isfinite(theta).all():
            try:
                self.flush_episodes()      # first: the checkpoint records how much of the CSV is its log
                self.save(self.run_dir / "latest.h5", theta=theta)
                self.write_logs()
            except OSError as exc:
                self._fail_write(f"could not save a checkpoint in {self.run_dir}: {exc}")
                return
            self.last_good_save = (self.run_dir / "latest.h5", steps)
        self._next_save = self._next_multiple(steps, self.config.save_every)
        if self.save_seconds:
            self._next_save_time = time.monotonic() + self.save_seconds

    def _flush_or_fail(self):
        try:
            self.flush_episodes()
        except OSError as exc:
            self._fail_write(f"could not append to {self.run_dir / 'episodes.csv'}: {exc}")

    def _fail_write(self, message):
        self._fault = message
        self.shared.counters[C_STATUS] = ERROR
        self.shared.counters[C_STOP] = 1

    @staticmethod
    def _next_multiple(T, every):
        if not every:
            return 0
        return (T // every + 1) * every
