"""The final status of a run, decided by a pure function: its table, case by case."""

import pytest

from numba_a3c.algorithms.state import BUDGET_DONE, DIVERGED, ERROR, OK, STOPPED
from numba_a3c.outcome import Outcome, decide_outcome, describe_worker_errors

STUCK = "worker thread(s) 1 did not stop within 10 s (blocked in the environment?); the checkpoint is a snapshot " \
        "taken while they ran"


@pytest.mark.parametrize("facts,status,name,errors", [
    # the workers' own endings
    (dict(workers_status=BUDGET_DONE), BUDGET_DONE, "finished", ()),
    (dict(workers_status=OK), OK, "finished", ()),
    (dict(workers_status=STOPPED), STOPPED, "paused", ()),
    # a requested stop wins over the workers' ending, but not over an error
    (dict(workers_status=STOPPED, stop_requested=True), STOPPED, "stopped", ()),
    (dict(workers_status=BUDGET_DONE, stop_requested=True), BUDGET_DONE, "stopped", ()),
    (dict(workers_status=STOPPED, worker_error="w", stop_requested=True), ERROR, "failed", ("w",)),
    # a worker's error, a fault, a thread left behind: failed
    (dict(workers_status=STOPPED, worker_error="w"), ERROR, "failed", ("w",)),
    (dict(workers_status=BUDGET_DONE, fault="f"), ERROR, "failed", ("f",)),
    (dict(workers_status=BUDGET_DONE, stuck_threads=[1], waited=10.0), ERROR, "failed", (STUCK,)),
    (dict(workers_status=STOPPED, worker_error="w", fault="f", stuck_threads=[1], waited=10.0), ERROR, "failed",
     ("w", "f", STUCK)),
    # divergence is kept through a fault and a thread left behind, and says what diverged
    (dict(workers_status=DIVERGED, divergence="d"), DIVERGED, "diverged", ("d",)),
    (dict(workers_status=DIVERGED, divergence="d", fault="f", stuck_threads=[1], waited=10.0), DIVERGED,
     "diverged", ("f", "d", STUCK)),
    (dict(workers_status=DIVERGED, divergence="d", stop_requested=True), DIVERGED, "diverged", ("d",)),
    # ... but a worker's exception is the failure to report (a NaN it raised on is not a divergence)
    (dict(workers_status=DIVERGED, worker_error="w", divergence="d"), ERROR, "failed", ("w",)),
    # the divergence message is used only for a run that diverged
    (dict(workers_status=BUDGET_DONE, divergence="d"), BUDGET_DONE, "finished", ()),
])
def test_decide_outcome_table(facts, status, name, errors):
    assert decide_outcome(**facts) == Outcome(status, name, errors)


def test_only_a_clean_finish_is_evaluated_at_the_end():
    assert decide_outcome(BUDGET_DONE).runs_final_eval
    assert not decide_outcome(BUDGET_DONE, stop_requested=True).runs_final_eval
    assert not decide_outcome(STOPPED).runs_final_eval
    assert not decide_outcome(BUDGET_DONE, fault="f").runs_final_eval
    assert not decide_outcome(DIVERGED, divergence="d").runs_final_eval


def test_a_failed_final_evaluation_is_reported_but_the_run_still_finished():
    outcome = decide_outcome(BUDGET_DONE).with_problem("the final evaluation failed: E")
    assert outcome == Outcome(BUDGET_DONE, "finished", ("the final evaluation failed: E",))
    assert decide_outcome(BUDGET_DONE).with_problem("") == decide_outcome(BUDGET_DONE)


@pytest.mark.parametrize("before,after", [("finished", "failed"), ("stopped", "failed"), ("paused", "failed"),
                                          ("failed", "failed"), ("diverged", "diverged")])
def test_a_failed_write_at_the_end_fails_the_run_unless_it_failed_or_diverged(before, after):
    outcome = Outcome(BUDGET_DONE, before, ("x",)).write_failed("could not write")
    assert outcome.name == after and outcome.errors == ("x", "could not write")


def test_worker_errors_name_the_first_thread_and_the_others():
    assert describe_worker_errors([]) == ""
    one = describe_worker_errors([(2, ValueError("bad"))])
    assert one.startswith("worker thread 2 failed: ValueError: bad")
    many = describe_worker_errors([(2, ValueError("bad")), (0, KeyError("k")), (0, KeyError("k")), (3, OSError())])
    assert many.startswith("worker thread 2 failed: ValueError: bad") and many.endswith("(threads 0, 3 failed too)")
