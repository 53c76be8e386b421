"""A training run, from a configuration to trained parameters: config → network → workers → result.

:class:`Trainer` puts a run's parts together and runs one session: it compiles the kernels,
starts the worker threads (:mod:`numba_a3c.workers`), lets the :class:`~numba_a3c.monitor.Monitor`
watch them from the calling thread, and at the end (budget reached, Ctrl-C, a failed worker or
divergence) decides the status (:func:`~numba_a3c.outcome.decide_outcome`), evaluates the final
parameters and saves. It prints nothing itself; callers pass ``on_progress`` / ``on_eval``.

The orchestration layer, one job per module (and the thread that owns its state):

=====================  ==========================================================  ==================
module                 its one job                                                 state owned by
=====================  ==========================================================  ==================
build.py               configuration → environment, network, initial state         (read-only parts)
trainer.py             a run's parts together; one session from start to result    monitor thread
monitor.py             the loop while workers train; why a run stops; wall time    monitor thread
episodes.py            finished episodes in memory (drained from ring buffers)     monitor thread
run_files.py           episodes.csv, evaluations.csv, when latest.h5 is due        monitor thread
evaluations.py         periodic and final evaluations, best.h5                     evaluation thread
                                                                                   + monitor (lock)
progress.py            a progress report                                           monitor thread
outcome.py             the final status, a pure function                           (no state)
workers.py             worker threads and the shared arrays                        worker threads
=====================  ==========================================================  ==================

The monitor thread is the one that calls :meth:`Trainer.run`.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numba_a3c.algorithms.state import (
    C_STATUS,
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    CI_BUDGET,
    CI_NORMALIZE_VALUE,
    DIVERGED,
    TF_GRAD_NORM,
    TF_LOSS,
    TI_EPISODES,
)
from numba_a3c.build import build_run
from numba_a3c.episodes import EpisodeRows, Episodes
from numba_a3c.evaluations import STOP_TIMEOUT, Evaluation, Evaluations
from numba_a3c.monitor import END_TIMEOUT, THETA_CHECK_INTERVAL, Clock, Monitor, StopReasons, close_environments
from numba_a3c.outcome import Outcome, decide_outcome, describe_worker_errors
from numba_a3c.progress import Progress
from numba_a3c.run_files import RunFiles
from numba_a3c.workers import Workers, compile_kernels, describe_exception, set_recurrent_states

__all__ = ["END_TIMEOUT", "RESUMABLE_CHANGES", "SAVE_SECONDS", "STOP_TIMEOUT", "THETA_CHECK_INTERVAL",
           "EpisodeRows", "Evaluation", "Progress", "RunResult", "Trainer"]

SAVE_SECONDS = 60.0           # a run with a run directory saves latest.h5 at least this often (wall time)

# Settings a resumed run may change: they do not alter what is learned (steps extends the budget).
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_episodes", "save_every", "log_interval", "env_processes")


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

    Threads: the monitor thread (the one that calls ``run()``) owns every attribute but ``shared``,
    whose arrays the workers write lock-free (workers.py); the evaluation thread touches only
    ``evals`` (under its lock) and reads a consistent copy of the episode rows to save best.h5;
    ``request_stop`` may be called from any thread.
    """

    end_timeout = END_TIMEOUT     # seconds the others get once a worker has ended (a test shortens it)
    resumable_changes = RESUMABLE_CHANGES   # what from_checkpoint lets a resume change (a subclass may add)

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
        self.shared = parts.initial_state()          # written lock-free by the workers (workers.py)
        self.on_progress = on_progress
        self.final_eval = final_eval
        self.episodes = Episodes(self.shared.n_threads)
        self.evals = Evaluations(config, self.network, self.env_info, on_eval, save_best=self._save_best,
                                 health_file=lambda: None if self.run_dir is None else self.run_dir / "health.csv",
                                 normalization=self.normalization)
        self.files = RunFiles(run_dir, config.save_every, save_seconds)
        self.stops = StopReasons(self.shared.counters)
        self.clock = Clock()
        self.resumed_consistent = False  # resumed from a checkpoint taken with every thread at rest
        self.optimizer_restarted = False  # resumed from a copy without optimizer statistics (they start at 0)

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
        refused = sorted(k for k, v in changes.items() if k not in cls.resumable_changes and getattr(config, k) != v)
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
        trainer.files.resume_log = (Path(path).parent / "episodes.csv", int(ckpt.attrs.get("csv_rows", 0)),
                               int(ckpt.attrs.get("csv_bytes", 0)))
        return trainer

    def restore(self, ckpt):
        """Load a checkpoint's parameters, optimiser state, counters, RNGs, normalisation statistics
        and logs into this run."""
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
        self.optimizer_restarted = bool(ckpt.attrs.get("optimizer_omitted", False))
        if not self.optimizer_restarted:       # else a copy without them: they stay at zero
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
        if ckpt.recurrent_state is not None and self.network.recurrent:
            if ckpt.recurrent_state.shape != (sh.n_threads, self.network.state_size):
                raise ValueError(f"the checkpoint's recurrent_state has shape {ckpt.recurrent_state.shape}, expected "
                                 f"{(sh.n_threads, self.network.state_size)}; it is damaged")
            set_recurrent_states(sh, self.network, ckpt.recurrent_state)   # the threads' (h, c)
        if ckpt.norm_stats is not None:
            if ckpt.norm_stats.shape != sh.norm_stats.shape or ckpt.norm_ret.shape != sh.norm_ret.shape:
                raise ValueError(f"the checkpoint's /normalizer holds statistics of shape {ckpt.norm_stats.shape}, "
                                 f"expected {sh.norm_stats.shape}; it is damaged")
            sh.norm_stats[:] = ckpt.norm_stats     # the running observation and return statistics
            sh.norm_ret[:] = ckpt.norm_ret
        if ckpt.value_stats is not None:
            sh.value_stats[:] = ckpt.value_stats       # --normalize-value: the scale the value head is in
        sh.config_i[CI_BUDGET] = self.config.steps
        self.episodes.restore(ckpt.episodes, int(ckpt.attrs.get("log_first_row", 0)), sh.thread_i[:, TI_EPISODES])
        self.evals.restore(ckpt.evaluations)
        self.clock.before = ckpt.wall_time
        self.resumed_consistent = bool(ckpt.attrs.get("at_rest", False))

    # ------------------------------------------------------------------ the run
    def run(self, stop_at=None):
        """Train until the budget is spent (or ``stop_at`` global steps, at a segment boundary).

        Ends early, always with every thread stopped (or given up on after ``STOP_TIMEOUT``) and
        the run saved, on :meth:`request_stop` or Ctrl-C ("stopped"), a worker's exception or a
        failed save ("failed"), or divergence ("diverged"). A second KeyboardInterrupt (or any
        other exception) during that shutdown propagates; checkpoints already on disk stay intact
        because every save is atomic.
        """
        compile_kernels(self.config, self.network, self.env_info)
        workers = Workers(self.shared, self.network, self.env_info, self.config)
        try:
            workers.reset_environments(fresh=not self.resumed_consistent)
        except Exception as exc:  # noqa: BLE001 - an environment that cannot start ends the run, plainly
            close_environments(workers)
            return self._result(Outcome(0, "failed", ("could not start the environments: " + describe_exception(exc),)),
                                self.clock.before, 0.0, None)
        except BaseException:   # Ctrl-C while they start: no environment process outlives it
            close_environments(workers)
            raise
        self.stops.begin(stop_at)
        self.evals.open()
        self.clock.start()
        monitor = Monitor(self, workers)
        self.files.schedule(monitor.steps_at_start)
        workers.start()
        left_behind = monitor.watch()
        elapsed = self.clock.elapsed()
        wall = self.clock.before + elapsed
        self.drain_episodes(wall)
        self.stops.check_theta(self.shared.theta)
        stopping = monitor.interrupted or self.stops.requested or self.shared.counters[C_STATUS]
        self.evals.finish(wait=not stopping, stop_requested=lambda: self.stops.requested)
        self.stops.note(self.evals.failure())
        self.clock.stop(elapsed)
        T = int(self.shared.counters[C_T])
        asked = monitor.interrupted or self.stops.requested
        outcome = decide_outcome(workers.status, describe_worker_errors(workers.errors), self.stops.fault,
                                 self._divergence_message(T), left_behind,
                                 waited=STOP_TIMEOUT if asked else self.end_timeout, stop_requested=asked)
        final = None
        if self.final_eval and outcome.runs_final_eval:
            final, problem = self.evals.final(self.shared.theta.copy(), T, wall, self.stops,
                                              theta_target=self.sarsa_target_copy())
            outcome = outcome.with_problem(problem)
        self.evals.close()
        outcome = self._save_at_end(outcome, at_rest=not left_behind)
        return self._result(outcome, wall, (T - monitor.steps_at_start) / elapsed if elapsed > 0 else 0.0, final)

    def _result(self, outcome, wall, steps_per_s, final):
        return RunResult(status=outcome.name, steps=int(self.shared.counters[C_T]), wall_time=wall,
                         steps_per_s=steps_per_s, episodes=int(self.shared.thread_i[:, TI_EPISODES].sum()),
                         final_eval=final, error="; ".join(outcome.errors), evaluations=list(self.evals.session))

    def normalization(self):
        """A snapshot of the run's normalisation for an evaluation: (FrozenObservations or None, the
        reward scale 1/√(σ_R² + ε) or 1, a copy of --normalize-value's statistics or None);
        numba_a3c.normalize."""
        from numba_a3c.normalize import FrozenObservations, reward_scale

        sh = self.shared
        values = sh.value_stats.copy() if sh.config_i[CI_NORMALIZE_VALUE] != 0 else None
        return (FrozenObservations.from_stats(sh.norm_stats, sh.norm_config),
                reward_scale(sh.norm_stats, sh.norm_config), values)

    def request_stop(self):
        """Ask a running ``run()`` to stop: workers end at their next step, the run saves and
        returns "stopped". Safe to call from a signal handler or another thread."""
        self.stops.request()

    def on_tick(self, steps, wall):
        """Called by the monitor loop about 50 times a second: periodic checkpoints, every
        ``save_every`` steps and every ``save_seconds`` of wall time (a subclass may add to it).

        A checkpoint is written only from finite parameters; a failed write (disk full, directory
        removed) stops the run as failed rather than training on without a way to resume.
        """
        if not self.files.save_due(steps):
            return
        theta = self.shared.theta.copy()
        if np.isfinite(theta).all():
            try:
                self.flush_episodes()      # first: the checkpoint records how much of the CSV is its log
                self.save(self.files.path("latest.h5"), theta=theta)
                self.write_logs()
            except OSError as exc:
                self.stops.fail(f"could not save a checkpoint in {self.run_dir}: {exc}")
                return
            self.files.saved_latest(steps)
        self.files.schedule(steps)

    def drain_episodes(self, wall):
        """Move newly finished episodes from the workers' ring buffers into ``episode_rows``; a
        return that is not finite stops the run as diverged."""
        self.stops.diverge(self.episodes.drain(self.shared, wall))

    def evaluate_now(self, params, steps, wall, report=True):
        """Evaluate ``params`` now, in this thread, and record it as one of the run's evaluations."""
        return self.evals.evaluate_now(params, steps, wall, report)

    def sarsa_target_copy(self):
        """A copy of θ⁻ for a Sarsa run (taken beside the copy of θ an evaluation gets, so that its
        health row can measure Sarsa's bootstrap bias: numba_a3c.diagnostics.bootstrap_bias); None
        for the other methods."""
        return self.shared.theta_target.copy() if self.config.algo == "sarsa" else None

    def _divergence_message(self, T):
        tf = self.shared.thread_f
        found = [f"thread {k}'s loss became {tf[k, TF_LOSS]:g} (gradient norm {tf[k, TF_GRAD_NORM]:g})"
                 for k in range(tf.shape[0])
                 if not (math.isfinite(tf[k, TF_LOSS]) and math.isfinite(tf[k, TF_GRAD_NORM]))][:2]
        if self.stops.divergence:
            found.append(self.stops.divergence)
        found = "; ".join(found) or "a loss or gradient became NaN or Inf"
        last = self.files.last_good_save
        keep = (f"the last good checkpoint {last[0]} (step {last[1]:,}) is kept"
                if last else "no checkpoint was saved before it (use --save-every to keep one)")
        return (f"training diverged at step {T:,}: {found}. Try a lower learning rate (a new run with "
                f"--lr {self.config.lr / 3:.2g}) or a smaller --clip-norm; {keep}")

    # ------------------------------------------------------------------ files
    def save(self, path, theta=None, at_rest=False):
        """Write a checkpoint of the run's current state (``theta`` replaces θ when given)."""
        from numba_a3c import checkpoint

        shared = self.shared if theta is None else dataclasses.replace(self.shared, theta=theta)
        first, rows = self.episodes.rows.snapshot()
        csv_rows, csv_bytes = self.files.csv_mark
        return checkpoint.save(path, config=self.config, network=self.network, shared=shared, episodes=rows,
                               evaluations=list(self.evals.rows), wall_time=self.clock.wall(), at_rest=at_rest,
                               log_attrs=dict(log_first_row=first, csv_rows=csv_rows, csv_bytes=csv_bytes))

    def _save_best(self, theta):
        """Evaluation thread: best.h5 from ``theta``; False without a run directory."""
        if self.run_dir is None:
            return False
        self.save(self.files.path("best.h5"), theta=theta)
        return True

    def flush_episodes(self):
        """Append the episodes not yet in episodes.csv, then forget all but the last ``TAIL`` rows."""
        self.files.flush(self.episodes.rows)

    def write_logs(self):
        """Append the new episodes to episodes.csv; rewrite evaluations.csv (a few rows) atomically."""
        self.flush_episodes()
        self.files.write_evaluations(self.evals.rows)

    def _save_at_end(self, outcome, at_rest):
        """latest.h5 unless the run diverged or θ is not finite (then diverged.h5, keeping the
        last good latest.h5), with the logs; a failed write makes the outcome "failed"."""
        if self.run_dir is None:
            return outcome
        try:
            self.flush_episodes()
            if outcome.status == DIVERGED or not np.isfinite(self.shared.theta).all():
                self.save(self.files.path("diverged.h5"), at_rest=at_rest)
            else:
                self.save(self.files.path("latest.h5"), at_rest=at_rest)
                self.files.saved_latest(int(self.shared.counters[C_T]))
            self.write_logs()
        except OSError as exc:
            return outcome.write_failed(f"could not write the run directory {self.run_dir}: {exc}")
        finally:
            self.files.close()
        return outcome

    # ------------------------------------------------------------------ the run's state, by its old names
    @property
    def run_dir(self):
        return self.files.run_dir

    @run_dir.setter
    def run_dir(self, path):
        self.files.run_dir = None if path is None else Path(path)

    @property
    def save_seconds(self):
        return self.files.save_seconds

    @property
    def episode_rows(self):
        """The finished episodes in memory (:class:`~numba_a3c.episodes.EpisodeRows`)."""
        return self.episodes.rows

    @property
    def episodes_dropped(self):
        """Finished episodes missing from the logs (a ring buffer overwrote them before the monitor drained it)."""
        return self.episodes.dropped
