"""A run's greedy evaluations: the periodic ones beside the workers, the final one, and best.h5.

Every ``eval_every`` global steps the monitor starts an evaluation of a copy of θ in its own
thread (one at a time), so the workers never wait for it; at the end of a run that spent its
budget, the final evaluation runs in a thread the monitor waits on, so that a stop request
abandons it instead of delaying the save. Each evaluation is appended to the run's rows (those of
evaluations.csv and of every checkpoint) and, when it is the best so far and the run has a run
directory, its parameters are saved as best.h5 and a row of the network's health on a few
hundred frames its policy plays (dead units per layer, entropy, value error: see
:mod:`numba_a3c.diagnostics`) is appended to health.csv.

Threads: :meth:`Evaluations.evaluate_now` runs in the evaluation thread; everything else is
called by the monitor thread. ``rows``, ``session``, ``best_mean``, ``_closed`` and health.csv are
written under ``_lock`` (the monitor closes the run while a late evaluation may still finish); ``error``
is written by the evaluation thread and read by the monitor.
"""

import math
import threading
from dataclasses import dataclass

import numpy as np

from numba_a3c.evaluate import evaluate
from numba_a3c.workers import describe_exception

STOP_TIMEOUT = 2.0            # seconds workers (and an evaluation) get to stop once asked


@dataclass
class Evaluation:
    steps: int
    wall_time: float
    returns: np.ndarray
    #: readings of a dying or dead network (dead or nearly silent layers; diagnostics.verdicts(alarms_only=True));
    #: empty when the network looks alive or the run logs no health (no run directory)
    health_alarms: tuple = ()

    @property
    def mean(self):
        return float(np.mean(self.returns))

    def row(self):
        r = self.returns
        return (self.steps, float(r.mean()), float(r.std()), float(r.min()), float(r.max()), len(r), self.wall_time)


class Evaluations:
    """The evaluations of one run. ``save_best(theta)`` writes best.h5 and returns True (False
    without a run directory); ``on_eval(Evaluation)`` reports a periodic evaluation."""

    def __init__(self, config, network, env_info, on_eval=None, save_best=None, health_file=None, normalization=None):
        self.config = config
        self.network = network
        self.env_info = env_info
        self.on_eval = on_eval
        self.save_best = save_best
        self.health_file = health_file   # () -> the path of health.csv, or None: where each evaluation logs health
        # () -> (FrozenObservations or None, reward scale): a snapshot of the run's normalisation
        self.normalization = normalization or (lambda: (None, 1.0, None))
        self.rows = []              # every evaluation of the run (earlier sessions too), as checkpoint rows
        self.session = []           # Evaluation objects of this session
        self.best_mean = -math.inf  # the best mean return so far: an evaluation above it writes best.h5
        self.error = None           # the exception of a failed periodic evaluation
        self._thread = None         # the periodic evaluation's thread, once one was started
        self._closed = False        # the run ended: a late evaluation must not write files
        self._lock = threading.Lock()

    def restore(self, rows):
        """Continue a resumed run whose checkpoint holds these evaluation rows."""
        self.rows = [tuple(r) for r in rows.tolist()]
        self.best_mean = max((float(r[1]) for r in rows), default=-math.inf)

    def open(self):
        """A session begins: evaluations may record and write again."""
        self._closed = False
        self.error = None

    def close(self):
        """A session ends: an evaluation still running records nothing and writes no file."""
        with self._lock:
            self._closed = True

    def evaluate_now(self, params, steps, wall, report=True, theta_target=None):
        """Evaluate ``params`` (``eval_episodes`` episodes, greedy or ε-greedy) and record the result;
        ``theta_target``: θ⁻ copied with ``params`` (Sarsa), whose bootstrap bias the health row adds."""
        eps = self.config.eval_epsilon
        observations, scale, value_stats = self.normalization()
        returns, _ = evaluate(self.network, params, self.env_info, episodes=self.config.eval_episodes,
                              mode="epsilon" if eps > 0 else "greedy", epsilon=eps,
                              seed=self.config.seed + 7919 * (len(self.rows) + 1), observations=observations)
        ev = Evaluation(steps, wall, returns)
        with self._lock:
            if self._closed:          # the run ended without waiting for this evaluation
                return ev
            self.session.append(ev)
            self.rows.append(ev.row())
            if ev.mean > self.best_mean and self.save_best is not None and self.save_best(params):
                self.best_mean = ev.mean
        ev.health_alarms = self._log_health(params, steps, wall, observations, scale, value_stats, theta_target)
        if report and self.on_eval is not None:
            self.on_eval(ev)
        return ev

    def _log_health(self, params, steps, wall, observations=None, reward_scale=1.0, value_stats=None,
                    theta_target=None):
        """Append the network's health on frames its policy plays (numba_a3c.diagnostics) to health.csv;
        returns its alarms (a tuple of readings of a dying or dead network, usually empty)."""
        path = None if self.health_file is None else self.health_file()
        if path is None:
            return ()
        from numba_a3c.diagnostics import append_health, health_row

        row, alarms = health_row(self.network, params, self.env_info, self.config,
                                 seed=self.config.seed + len(self.rows), observations=observations,
                                 reward_scale=reward_scale, value_stats=value_stats, target_params=theta_target)
        with self._lock:
            if not self._closed:
                append_health(path, steps, wall, row)
        return tuple(alarms)

    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def start(self, theta, steps, wall, on_failure, theta_target=None):
        """A periodic evaluation of ``theta`` (a copy; ``theta_target``: θ⁻ copied with it, for Sarsa) in its
        own thread; ``on_failure()`` is called there if it raises, so that the run stops instead of
        losing the failure."""
        def guarded():
            try:
                self.evaluate_now(theta, steps, wall, theta_target=theta_target)
            except BaseException as exc:  # noqa: BLE001 - reported by the monitor, which stops the run
                self.error = exc
                on_failure()

        self._thread = threading.Thread(target=guarded, name="asyncrl-eval", daemon=True)
        self._thread.start()

    def failure(self):
        """The periodic evaluation's failure, described, or ""."""
        return "" if self.error is None else "the periodic evaluation failed: " + describe_exception(self.error)

    def finish(self, wait, stop_requested):
        """Wait for a periodic evaluation still running: while ``wait`` and no stop is requested
        (``stop_requested()``), then at most STOP_TIMEOUT. One that is still running is closed out."""
        t = self._thread
        if t is None:
            return
        if wait:
            while t.is_alive() and not stop_requested():
                t.join(0.1)
        t.join(STOP_TIMEOUT)
        with self._lock:
            self._closed = t.is_alive()   # a late evaluation must not write best.h5 any more

    def final(self, theta, steps, wall, stops, theta_target=None):
        """The final evaluation of ``theta`` (``theta_target``: θ⁻ copied with it, for Sarsa), in a thread the
        monitor waits on until it ends or ``stops`` is asked to stop (Ctrl-C asks it). Returns
        (Evaluation or None, a problem or "")."""
        box = {}

        def target():
            try:
                box["ev"] = self.evaluate_now(theta, steps, wall, report=False, theta_target=theta_target)
            except BaseException as exc:  # noqa: BLE001 - reported as the run's error
                box["error"] = exc

        t = threading.Thread(target=target, name="asyncrl-final-eval", daemon=True)
        t.start()
        try:
            while t.is_alive() and not stops.requested:
                t.join(0.1)
        except KeyboardInterrupt:
            stops.requested = True
        if t.is_alive():
            return None, ""
        if "error" in box:
            return None, "the final evaluation failed: " + describe_exception(box["error"])
        return box.get("ev"), ""
