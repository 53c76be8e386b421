"""The trainer's parts, each alone: why a run stops, its clock, when latest.h5 is due, the episodes drained."""

import math

import numpy as np

from numba_a3c.algorithms.state import C_SIZE, C_STATUS, C_STOP, DIVERGED, ERROR, TI_EPISODES
from numba_a3c.build import build_run
from numba_a3c.config import resolve
from numba_a3c.episodes import Episodes
from numba_a3c.monitor import Clock, StopReasons
from numba_a3c.run_files import RunFiles, next_multiple


def test_stop_reasons_raise_the_stop_flag_and_keep_the_first_divergence():
    counters = np.zeros(C_SIZE, np.int64)
    stops = StopReasons(counters)
    stops.diverge("")
    assert counters[C_STOP] == 0 and stops.divergence == ""
    stops.diverge("first")
    stops.diverge("second")
    assert stops.divergence == "first" and counters[C_STATUS] == DIVERGED and counters[C_STOP] == 1
    stops.begin(stop_at=None)
    assert counters[C_STOP] == 0 and counters[C_STATUS] == 0 and stops.divergence == ""
    stops.note("evaluation failed")
    stops.note("another")
    assert stops.fault == "evaluation failed" and counters[C_STOP] == 0   # the evaluation raised the flag itself
    stops.fail("disk full")
    assert stops.fault == "disk full" and counters[C_STATUS] == ERROR and counters[C_STOP] == 1
    stops.request()
    stops.begin(stop_at=None)
    assert counters[C_STOP] == 1, "a stop requested before a session starts stops it at once"


def test_check_theta_counts_the_non_finite_parameters():
    stops = StopReasons(np.zeros(C_SIZE, np.int64))
    theta = np.zeros(1000)
    stops.check_theta(theta)
    assert stops.divergence == ""
    theta[[3, 7]] = [np.nan, np.inf]
    stops.check_theta(theta)
    assert stops.divergence == "2 of the 1,000 parameters became NaN or Inf"


def test_clock_adds_the_sessions():
    clock = Clock()
    clock.before = 5.0
    assert clock.wall() == 5.0 and clock.elapsed() == 0.0
    clock.start()
    assert clock.wall(now=clock.t0 + 2.0) == 7.0
    clock.stop(2.5)
    assert clock.before == 7.5 and clock.t0 is None


def test_save_schedule(tmp_path):
    assert [next_multiple(T, 100) for T in (0, 99, 100, 250)] == [100, 100, 200, 300] and next_multiple(5, 0) == 0
    files = RunFiles(tmp_path, save_every=100, save_seconds=0)
    files.schedule(0)
    assert not files.save_due(99) and files.save_due(100)
    files.schedule(130)
    assert not files.save_due(199) and files.save_due(200)
    by_time = RunFiles(tmp_path, save_every=0, save_seconds=1e-9)
    by_time.schedule(0)
    assert by_time.save_due(0)
    assert not RunFiles(None, save_every=1, save_seconds=1e-9).save_due(10**9), "no run directory, no saves"


def test_drain_collects_each_episode_once_and_reports_a_non_finite_return():
    shared = build_run(resolve(dict(threads=2, steps=100))).initial_state()
    episodes = Episodes(shared.n_threads)
    shared.episode_log[0, :2] = [(10, 1.0, 10), (25, 2.0, 15)]
    shared.episode_log[1, :1] = [(12, 3.0, 12)]
    shared.thread_i[:, TI_EPISODES] = [2, 1]
    assert episodes.drain(shared, wall=1.5) == ""
    assert episodes.drain(shared, wall=2.0) == ""
    assert [r[:4] for r in episodes.rows] == [(10, 0, 1.0, 10), (25, 0, 2.0, 15), (12, 1, 3.0, 12)]
    assert list(episodes.recent) == [1.0, 2.0, 3.0] and episodes.dropped == 0
    shared.episode_log[1, 1] = (30, math.nan, 18)
    shared.thread_i[1, TI_EPISODES] = 2
    assert episodes.drain(shared, wall=3.0).startswith("thread 1's episode ending at step 30 returned nan")
