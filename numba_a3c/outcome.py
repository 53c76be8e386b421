"""How a run ended, decided from what happened: a pure function and the table it follows.

:func:`decide_outcome` takes the facts the trainer gathered when its workers stopped (the workers'
status code, their errors, a fault the monitor found, threads left behind, whether a stop was
requested) and returns an :class:`Outcome`: the status code, the name a caller sees
(``RunResult.status``) and the errors to report. Nothing here reads a thread or a file, so
tests/test_outcome.py checks the whole table directly.

=========================================  ==========================  =================
what happened (first match wins)           status code                 name
=========================================  ==========================  =================
a worker raised                            ERROR                       "failed"
the monitor found a fault (failed save,    ERROR (DIVERGED kept)       "failed"
failed evaluation)                                                     ("diverged")
a loss, θ or a return became NaN/Inf       DIVERGED                    "diverged"
a worker did not stop in time              ERROR (DIVERGED kept)       "failed"
a stop was requested (Ctrl-C, SIGTERM)     as the workers said         "stopped"
the workers reached ``stop_at``            STOPPED                     "paused"
the workers spent the budget               BUDGET_DONE                 "finished"
=========================================  ==========================  =================

Errors accumulate in that order (a worker's, the fault, the divergence, the threads left behind).
"""

from dataclasses import dataclass

from numba_a3c.algorithms.state import BUDGET_DONE, DIVERGED, ERROR, STATUS_NAMES, STOPPED
from numba_a3c.workers import WorkerError


@dataclass(frozen=True)
class Outcome:
    status: int               # a status code of algorithms/state.py
    name: str                 # "finished", "stopped", "paused", "diverged" or "failed"
    errors: tuple = ()

    @property
    def runs_final_eval(self):
        """Only a run that spent its budget, unasked and without errors, is evaluated at the end."""
        return self.status == BUDGET_DONE and self.name == "finished" and not self.errors

    def with_problem(self, problem):
        """The same outcome, reporting ``problem`` too (a failed final evaluation: the run still finished)."""
        return self if not problem else Outcome(self.status, self.name, self.errors + (problem,))

    def write_failed(self, message):
        """The outcome after the run directory could not be written at the end: "failed" unless
        it had already failed or diverged."""
        name = self.name if self.name in ("failed", "diverged") else "failed"
        return Outcome(self.status, name, self.errors + (message,))


def decide_outcome(workers_status, worker_error="", fault="", divergence="", stuck_threads=(), waited=0.0,
                   stop_requested=False):
    """The :class:`Outcome` of a run (see the module's table).

    ``workers_status``: the status code the workers ended with; ``worker_error``: the first failed
    worker, described ("" if none); ``fault``: what the monitor found ("" if nothing);
    ``divergence``: what to report if the run diverged; ``stuck_threads``: the worker threads still
    running after ``waited`` seconds; ``stop_requested``: a stop was asked for (Ctrl-C, SIGTERM,
    ``request_stop``).
    """
    status = workers_status
    errors = []
    if worker_error:
        errors.append(worker_error)
        status = ERROR
    if fault:
        errors.append(fault)
        if status != DIVERGED:
            status = ERROR
    if status == DIVERGED:
        errors.append(divergence)
    if stuck_threads:
        errors.append(f"worker thread(s) {', '.join(map(str, stuck_threads))} did not stop within {waited:g} s "
                      f"(blocked in the environment?); the checkpoint is a snapshot taken while they ran")
        if status not in (ERROR, DIVERGED):
            status = ERROR
    if status in (ERROR, DIVERGED):
        name = STATUS_NAMES[status]
    elif stop_requested:
        name = "stopped"
    elif status == STOPPED:
        name = "paused"
    else:
        name = STATUS_NAMES.get(status, "finished")
    return Outcome(status, name, tuple(errors))


def describe_worker_errors(errors):
    """The first failed worker of ``errors`` ((thread, exception) pairs), described, naming the
    other threads that failed too; "" for none."""
    if not errors:
        return ""
    k, exc = errors[0]
    message = str(WorkerError(k, exc))
    if len(errors) > 1:
        others = sorted({j for j, _ in errors[1:]})
        message += f" (threads {', '.join(map(str, others))} failed too)"
    return message
