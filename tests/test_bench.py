"""``asyncrl bench throughput | speedup | optimizers`` end to end with tiny budgets, and their arithmetic.

These check the structure of the output (text and --json) and the bookkeeping (medians, speed-ups,
the paper's numbers, the learning-rate sample), never how fast this machine is.
"""

import json
import math
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from numba_a3c.benchmarks import optimizers, report, speedup
from numba_a3c.cli.main import cli
from numba_a3c.data import data_path

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def bench(*args):
    """Run ``asyncrl bench ARGS``; returns click's Result (stdout and stderr kept apart)."""
    return CliRunner().invoke(cli, ["bench", *map(str, args)], catch_exceptions=False)


def bench_json(*args):
    result = bench(*args, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ----------------------------------------------------------------------------- throughput
def test_throughput_text_report():
    r = bench("throughput", "--algos", "a3c,sarsa", "--threads", f"1,{CORES + 1}", "--repeats", 1,
              "--warmup", 0.1, "--duration", 0.2)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("machine:") and "\nversions: numba_a3c" in out
    assert "algorithm" in out and "steps/s" in out and "speed-up" in out
    lines = out.splitlines()
    rows = [line for line in lines if line.startswith(("a3c ", "sarsa "))]
    assert len(rows) == 4
    assert all("CartPole-v1 (native)" in row for row in rows)
    assert all("1.00x" in row for row in rows[::2])                  # 1 thread is the reference
    assert all(f"{CORES + 1}*" in row for row in rows[1::2])           # more threads than cores: marked
    assert any(line.startswith("* more threads than the") for line in lines)
    assert "issue 3 targets" in out and "A3C, 1 thread: >= 300,000 steps/s: measured" in out
    assert "repeat 1/1" in r.stderr                                    # progress goes to stderr


def test_throughput_json_structure():
    doc = bench_json("throughput", "--algos", "onestep-q", "--threads", "1,2", "--repeats", 2,
                     "--warmup", 0.1, "--duration", 0.15)
    assert doc["benchmark"] == "throughput"
    assert {"cpu", "cores", "usable_cores", "numba", "numpy", "gymnasium", "numba_a3c"} <= set(doc["machine"])
    assert doc["settings"]["threads"] == [1, 2] and doc["settings"]["repeats"] == 2
    rows = doc["rows"]
    assert [(r["algo"], r["threads"]) for r in rows] == [("onestep-q", 1), ("onestep-q", 2)]
    for r in rows:
        assert len(r["samples"]) == 2 and all(s > 0 for s in r["samples"])
        assert r["steps_per_s"] == pytest.approx(float(np.median(r["samples"])))
        assert r["oversubscribed"] == (r["threads"] > CORES)
        assert r["status"] == "ok"
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(rows[1]["steps_per_s"] / rows[0]["steps_per_s"])
    assert doc["targets"] == []                                        # the targets are A3C's


def test_throughput_measures_with_another_preset():
    """--preset NAME measures what asyncrl train --preset NAME trains (atari-lstm against atari on
    Pong; here the recurrent CartPoleNoVel-v1 preset against the feed-forward CartPole-v1 one)."""
    args = ("--env", "CartPoleNoVel-v1", "--algos", "a3c", "--threads", "1", "--repeats", 1, "--warmup", 0.1,
            "--duration", 0.15)
    own = bench_json("throughput", *args)
    other = bench_json("throughput", *args, "--preset", "CartPole-v1")
    assert (own["settings"]["preset"], own["settings"]["network"]) == ("CartPoleNoVel-v1", "lstm")
    assert (other["settings"]["preset"], other["settings"]["network"]) == ("CartPole-v1", "mlp")
    assert own["rows"][0]["steps_per_s"] > 0 and other["rows"][0]["steps_per_s"] > 0
    r = bench("throughput", "--preset", "atari-lsmt", "--algos", "a3c", "--threads", "1")
    assert r.exit_code == 2 and "unknown preset 'atari-lsmt'; the shipped presets are" in r.output


def test_throughput_gymnasium_environment():
    doc = bench_json("throughput", "--algos", "a3c", "--threads", "1", "--repeats", 1, "--warmup", 0.1,
                     "--duration", 0.2, "--gym")
    assert doc["settings"]["gym"] is True
    assert doc["rows"][0]["env_kind"] == "gym" and doc["rows"][0]["steps_per_s"] > 0


def test_throughput_environment_processes_side_by_side():
    doc = bench_json("throughput", "--algos", "a3c", "--threads", "1,2", "--repeats", 1, "--warmup", 0.1,
                     "--duration", 0.3, "--gym", "--env-processes", "both")
    rows = doc["rows"]
    assert [(r["threads"], r["env_processes"]) for r in rows] == [(1, False), (1, True), (2, False), (2, True)]
    assert rows[0]["speedup"] == 1.0                           # every speed-up is over 1 thread in-process
    assert rows[3]["speedup"] == pytest.approx(rows[3]["steps_per_s"] / rows[0]["steps_per_s"])
    r = bench("throughput", "--algos", "a3c", "--threads", "1", "--env-processes", "on")
    assert r.exit_code == 2 and "is a native (Numba) environment" in r.output


# ----------------------------------------------------------------------------- speedup
def test_speedup_text_report_beside_the_paper():
    r = bench("speedup", "--algos", "a3c", "--threads", "1,2", "--seeds", "0", "--criterion", "train",
              "--target", 5, "--steps", 20000, "--time-cap", 10)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("machine:")
    assert "mean return of the last 100 training episodes" in out
    assert "Table 2 form" in out
    t2 = out.split("Table 2 form", 1)[1]
    a3c = [line for line in t2.splitlines() if line.startswith("a3c")][0]
    assert "1.00 (1.0)" in a3c and "(2.1)" in a3c                     # the paper's A3C column
    assert "reached 5 after" in r.stderr


def test_speedup_json_and_not_reached():
    doc = bench_json("speedup", "--algos", "nstep-q", "--threads", "1,2", "--seeds", "0,1", "--target", 1e9,
                     "--steps", 3000, "--eval-every", 1000, "--eval-episodes", 1)
    assert doc["benchmark"] == "speedup" and doc["settings"]["criterion"] == "eval"
    rows = doc["rows"]
    assert [r["threads"] for r in rows] == [1, 2]
    for r in rows:
        assert r["reached"] == 0 and r["median_seconds"] is None and r["speedup"] is None
        assert [a["seed"] for a in r["attempts"]] == [0, 1]
        assert all(a["outcome"] == "budget spent" and a["steps"] == -1 for a in r["attempts"])
    assert [r["paper"] for r in rows] == [1.0, 2.7]


def test_speedup_eval_criterion_reaches_at_an_evaluation():
    # Every CartPole episode lasts at least 8 steps, so the first greedy evaluation already scores >= 5.
    doc = bench_json("speedup", "--algos", "a3c", "--threads", "1", "--seeds", "0", "--target", 5,
                     "--steps", 300000, "--eval-every", 2000, "--eval-episodes", 1)
    (row,) = doc["rows"]
    (a,) = row["attempts"]
    assert a["reached"] and a["outcome"] == "reached"
    assert a["steps"] >= 2000 and 0 < a["seconds"] <= a["run_seconds"]
    assert a["run_steps"] < 300000                                      # stopped at the target, not the budget
    assert row["median_seconds"] == a["seconds"] and row["speedup"] == 1.0


def test_speedup_text_says_not_reached():
    r = bench("speedup", "--algos", "a3c", "--threads", "1", "--seeds", "0", "--target", 1e9, "--steps", 2000,
              "--quiet")
    assert r.exit_code == 0, r.output
    assert "not reached" in r.stdout and "0/1" in r.stdout


def test_paper_table2_matches_the_shipped_reference():
    table = speedup.paper_table2()
    assert table["a3c"] == {1: 1.0, 2: 2.1, 4: 3.7, 8: 6.9, 16: 12.5}
    assert table["onestep-q"][16] == 24.1 and table["sarsa"][8] == 13.1 and table["nstep-q"][4] == 5.9
    with open(data_path("reference", "paper.json")) as fh:
        assert json.load(fh)["throughput"]["agent_steps_per_s_whole_machine"] == 926


# ----------------------------------------------------------------------------- optimizers
def test_optimizers_text_and_json():
    args = ("optimizers", "--runs", 2, "--steps", 3000, "--eval-episodes", 2, "--seed", 3)
    r = bench(*args, "--quiet")
    assert r.exit_code == 0, r.output
    out = r.stdout
    header = [line for line in out.splitlines() if line.startswith("learning rate")][0]
    assert header.split() == ["learning", "rate", "shared-rmsprop", "rmsprop", "momentum"]
    assert "summary (threshold 475" in out
    for name in ("shared-rmsprop", "rmsprop", "momentum"):
        assert any(line.startswith(name) and "/2" in line for line in out.splitlines())

    doc = bench_json(*args)
    lrs = doc["settings"]["learning_rates"]
    assert len(lrs) == 2 and lrs == sorted(lrs) and all(1e-4 <= x <= 1e-2 for x in lrs)
    assert len(doc["runs"]) == 6
    for o in ("shared-rmsprop", "rmsprop", "momentum"):
        mine = [x for x in doc["runs"] if x["optimizer"] == o]
        assert [x["lr"] for x in mine] == lrs                          # every optimizer gets the same rates
        assert [x["seed"] for x in mine] == [3, 4]
    assert [s["optimizer"] for s in doc["summary"]] == ["shared-rmsprop", "rmsprop", "momentum"]


def test_learning_rate_sample_is_log_uniform_and_reproducible():
    a = optimizers.sample_learning_rates(2000, 1e-4, 1e-2, seed=1)
    assert np.all(np.diff(a) >= 0) and a.min() >= 1e-4 and a.max() <= 1e-2
    # log10 of a LogUniform(1e-4, 1e-2) sample is uniform on [-4, -2]: half of it below 1e-3.
    assert abs(np.mean(a < 1e-3) - 0.5) < 0.05
    np.testing.assert_array_equal(a, optimizers.sample_learning_rates(2000, 1e-4, 1e-2, seed=1))


def test_optimizer_summary_by_hand():
    runs = [optimizers.OptimizerRun("rmsprop", lr, 0, score, "finished", 1.0)
            for lr, score in ((1e-4, 100.0), (1e-3, 500.0), (3e-3, 480.0), (1e-2, math.nan))]
    s = optimizers.summarize("rmsprop", runs, threshold=475.0)
    assert s.solved == 2 and s.runs == 4
    assert s.mean_score == pytest.approx((100 + 500 + 480 + 0) / 4)     # the diverged run counts 0
    assert s.auc == pytest.approx((100 + 500 + 480) / 4 / 475)
    assert (s.lr_solved_min, s.lr_solved_max) == (1e-3, 3e-3)


# ----------------------------------------------------------------------------- shared pieces and bad input
def test_json_ready_and_median():
    assert report.json_ready({"a": [math.nan, 1.0, math.inf], "b": (2, -math.inf)}) == {"a": [None, 1.0, None],
                                                                                       "b": [2, None]}
    assert report.median([3.0, math.nan, 1.0, 2.0]) == 2.0 and math.isnan(report.median([math.nan]))


@pytest.mark.parametrize("args, message", [
    (("throughput", "--threads", "0"), "must be >= 1"),
    (("throughput", "--threads", "1,x"), "comma-separated list of integers"),
    (("throughput", "--algos", "a3c,ppo"), "ppo"),
    (("speedup", "--env", "NoSuchEnv-v0"), "NoSuchEnv-v0"),
    (("speedup", "--env", "MountainCarContinuous-v0"), "discrete"),
    (("speedup", "--env", "MountainCar-v0"), "give one with --target"),
    (("optimizers", "--lr-low", "0.01", "--lr-high", "0.001"), "--lr-high"),
    (("optimizers", "--plot", "/no/such/folder/plot.png"), "does not exist"),
])
def test_bad_input_is_a_usage_error(args, message):
    r = bench(*args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and "Traceback" not in r.output


def test_plot_folder_is_checked_before_the_optional_extra(tmp_path, monkeypatch):
    """The same mistake gets the same message whether or not matplotlib is installed."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # makes `import matplotlib` fail
    r = bench("optimizers", "--plot", tmp_path / "no_such_folder" / "plot.png")
    assert r.exit_code == 2 and "does not exist" in r.stderr, r.output
    r = bench("optimizers", "--plot", tmp_path / "plot.png")
    assert r.exit_code == 2 and "pip install 'numba_a3c[plot]'" in r.stderr, r.output
    assert "Traceback" not in r.output and not (tmp_path / "plot.png").exists()


def test_plot_files(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "throughput.png"
    r = bench("throughput", "--algos", "a3c", "--threads", "1,2", "--repeats", 1, "--warmup", 0.1,
              "--duration", 0.1, "--plot", path, "--quiet")
    assert r.exit_code == 0, r.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
