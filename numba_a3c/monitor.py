"""The monitor loop: what the thread that calls ``Trainer.run`` does while the workers train.

About 50 times a second (:meth:`Monitor.tick`) the monitor drains finished episodes, checks that θ
is finite (every ``THETA_CHECK_INTERVAL`` seconds: a NaN weight behind a dead ReLU shows in no
loss) and that no value estimate has blown up while staying finite (:func:`value_blowup`),
appends to episodes.csv (every ``FLUSH_SECONDS``), starts periodic evaluations, reports
progress and calls ``Trainer.on_tick`` (the periodic saves). Once the stop flag is up or a worker
has ended, it starts nothing more and gives the other workers ``STOP_TIMEOUT`` (asked to stop) or
``end_timeout`` (budget, pause) seconds before leaving them behind.

* :class:`StopReasons`: why the run is stopping, besides the workers' own status.
* :class:`Clock`: the run's wall time across sessions.
* :class:`Monitor`: one session's loop and its timers.

Threads: everything here belongs to the monitor thread, except ``StopReasons.requested``, which
any thread may set (a signal handler, the CLI, a test) through :meth:`StopReasons.request`.
"""

import time

import numpy as np

from numba_a3c.algorithms.state import C_PAUSE_AT, C_STATUS, C_STOP, C_T, DIVERGED, ERROR, NEVER, TF_VALUE
from numba_a3c.episode_log import FLUSH_SECONDS
from numba_a3c.evaluations import STOP_TIMEOUT
from numba_a3c.progress import progress_report
from numba_a3c.run_files import next_multiple

END_TIMEOUT = 10.0            # seconds the other workers get to finish once one has ended (budget, pause)
THETA_CHECK_INTERVAL = 0.1    # seconds between the monitor's checks that θ is finite


class StopReasons:
    """Why a run stops, besides the workers' own status: a requested stop, a fault the monitor
    found (a failed save or evaluation), or what became non-finite. Each of them raises the
    shared stop flag, so the workers end at their next step."""

    def __init__(self, counters):
        self.counters = counters    # the shared counters (workers.py): the stop flag and the status
        self.requested = False      # a stop was asked for; any thread may set it
        self.fault = ""             # the monitor's fault, described
        self.divergence = ""        # what the monitor found non-finite, described

    def request(self):
        """Ask the workers to stop at their next step. Safe from a signal handler or another thread."""
        self.requested = True
        self.counters[C_STOP] = 1

    def begin(self, stop_at):
        """A session starts: clear the last one's reasons; pause at ``stop_at`` global steps (None: never)."""
        self.counters[C_STOP] = 1 if self.requested else 0
        self.counters[C_STATUS] = 0
        self.counters[C_PAUSE_AT] = NEVER if stop_at is None else int(stop_at)
        self.fault = self.divergence = ""

    def stop_workers(self):
        self.counters[C_STOP] = 1

    def fail(self, message):
        """Stop the run as failed (a write that failed: training on could not be resumed)."""
        self.fault = message
        self.counters[C_STATUS] = ERROR
        self.counters[C_STOP] = 1

    def note(self, fault):
        """Record ``fault`` (a failed evaluation; "" for none) unless one is recorded already."""
        if fault and not self.fault:
            self.fault = fault

    def diverge(self, what):
        """Stop the run as diverged because ``what`` ("" for nothing) became NaN or Inf; the first one counts."""
        if what and not self.divergence:
            self.divergence = what
            self.counters[C_STATUS] = DIVERGED
            self.counters[C_STOP] = 1

    def check_values(self, values, episodes, config):
        """Diverge if a thread's value estimate has grown without bound while staying finite
        (:func:`value_blowup`): ``values`` are the threads' mean V (or Q) over their last segment."""
        if not self.divergence:
            self.diverge(value_blowup(values, episodes.max_abs_return, episodes.seen, config))

    def check_theta(self, theta):
        """Diverge if θ holds a NaN or Inf (the learners see only losses and gradients)."""
        if not self.divergence and not np.isfinite(theta).all():
            bad = int(np.size(theta) - np.isfinite(theta).sum())
            self.diverge(f"{bad:,} of the {np.size(theta):,} parameters became NaN or Inf")


BLOWUP_FACTOR = 100.0   # a value estimate this many times the returns' scale has blown up
BLOWUP_EPISODES = 10    # episodes to see before the returns' scale is judged


def value_blowup(values, max_abs_return, episodes_seen, config):
    """What blew up, described, or "".

    A value estimate is an expected discounted return, so its size is bounded by the returns' scale:
    the largest |episode return| seen so far, or c/(1 − γ) when training rewards are clipped to
    [−c, c]. An estimate more than BLOWUP_FACTOR times that scale (after BLOWUP_EPISODES episodes)
    is a divergence that stays finite, e.g. an unscaled return of hundreds driving the value head
    to −10⁶ while every loss is still a number.
    """
    if episodes_seen < BLOWUP_EPISODES:
        return ""
    scale = max(max_abs_return, 1.0)
    if config.reward_clip > 0:
        scale = max(scale, config.reward_clip / (1.0 - config.gamma))
    values = np.asarray(values, np.float64)
    k = int(np.argmax(np.abs(np.nan_to_num(values, nan=0.0))))
    if not abs(values[k]) > BLOWUP_FACTOR * scale:
        return ""
    what = "V" if config.algo == "a3c" else "Q"
    return (f"the value estimate grew without bound: thread {k}'s mean {what} over its last segment is "
            f"{values[k]:.3g}, over {BLOWUP_FACTOR:g}× the largest episode return so far ({max_abs_return:.3g}); "
            f"returns of this scale need --reward-clip (e.g. 1) or a lower --lr")


class Clock:
    """The run's wall time: ``before`` (earlier sessions, resumes included) plus this session's."""

    def __init__(self):
        self.before = 0.0     # seconds of earlier sessions
        self.t0 = None        # time.monotonic() when this session started; None between sessions

    def start(self):
        self.t0 = time.monotonic()

    def elapsed(self):
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def wall(self, now=None):
        return self.before + (0.0 if self.t0 is None else (time.monotonic() if now is None else now) - self.t0)

    def stop(self, elapsed):
        """The session ended after ``elapsed`` seconds (measured when its workers stopped)."""
        self.before += elapsed
        self.t0 = None


class Monitor:
    """One session of ``trainer`` watching ``workers`` (already started); :meth:`watch` runs it."""

    def __init__(self, trainer, workers):
        self.trainer = trainer
        self.workers = workers
        self.steps_at_start = int(trainer.shared.counters[C_T])
        t0 = trainer.clock.t0
        self.next_eval = next_multiple(self.steps_at_start, trainer.config.eval_every)
        self.next_flush = t0 + FLUSH_SECONDS
        self.next_log = t0 + trainer.config.log_interval
        self.next_theta_check = t0 + THETA_CHECK_INTERVAL
        self.ending_since = None     # when the stop flag went up or a worker ended
        self.interrupted = False     # Ctrl-C reached the monitor loop

    def watch(self):
        """Loop until every worker has ended, or those left did not end in time; closes the
        environments if every worker ended. Returns the worker threads left behind (indices).

        A KeyboardInterrupt stops the workers (``interrupted``); any other exception in the loop
        (a callback raising, a second signal) stops them, waits briefly and propagates."""
        workers, counters = self.workers, self.trainer.shared.counters
        try:
            while workers.alive():
                time.sleep(0.02)
                if not self.tick(time.monotonic()):
                    counters[C_STOP] = 1
                    break
        except KeyboardInterrupt:
            self.interrupted = True
            counters[C_STOP] = 1
            workers.join(timeout=STOP_TIMEOUT)
        except BaseException:
            counters[C_STOP] = 1
            self.trainer.evals.close()
            workers.join(timeout=STOP_TIMEOUT)
            raise
        stuck = workers.join(timeout=0.0 if self.ending_since is not None or self.interrupted else None) is False
        left = [k for k, t in enumerate(workers.threads) if t.is_alive()]
        if not stuck or getattr(workers, "env_processes", False):
            # Environment processes close even under a stuck worker: killing the child ends its wait.
            close_environments(workers)
        return left

    def tick(self, now):
        """One pass of the loop; False when the workers still running are to be left behind."""
        tr = self.trainer
        wall = tr.clock.wall(now)
        tr.drain_episodes(wall)
        if now >= self.next_theta_check:
            tr.stops.check_theta(tr.shared.theta)
            tr.stops.check_values(tr.shared.thread_f[:, TF_VALUE], tr.episodes, tr.config)
            self.next_theta_check = now + THETA_CHECK_INTERVAL
        if now >= self.next_flush:
            try:
                tr.flush_episodes()
            except OSError as exc:
                tr.stops.fail(f"could not append to {tr.run_dir / 'episodes.csv'}: {exc}")
            self.next_flush = now + FLUSH_SECONDS
        tr.stops.note(tr.evals.failure())
        asked = bool(tr.shared.counters[C_STOP])
        if asked or not all(t.is_alive() for t in self.workers.threads):
            # Ending: no new evaluations or saves; the others get STOP_TIMEOUT (asked) or
            # end_timeout seconds, then the run ends without them (a thread blocked in its environment).
            self.ending_since = now if self.ending_since is None else self.ending_since
            return now - self.ending_since <= (STOP_TIMEOUT if asked else tr.end_timeout)
        T = int(tr.shared.counters[C_T])
        if self.next_eval and T >= self.next_eval and T < tr.config.steps:
            if not tr.evals.running():
                tr.evals.start(tr.shared.theta.copy(), T, wall, on_failure=tr.stops.stop_workers,
                               theta_target=tr.sarsa_target_copy())
            self.next_eval = next_multiple(T, tr.config.eval_every)
        if now >= self.next_log and tr.on_progress is not None:
            tr.on_progress(progress_report(tr.shared, tr.config, tr.episodes.recent, now - tr.clock.t0,
                                           self.steps_at_start))
            self.next_log = now + tr.config.log_interval
        tr.on_tick(T, wall)
        return True


def close_environments(workers):
    try:
        workers.close()
    except Exception:  # noqa: BLE001 - a failing env.close() must not lose the checkpoint
        pass
