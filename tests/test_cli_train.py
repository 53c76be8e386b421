"""``asyncrl train`` end to end with tiny budgets: what it prints and what it writes.

(Bad input, faults and signals are tested in tests/test_robustness*.py.)
"""

import csv
import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from numba_a3c.cli.main import cli
from numba_a3c.config import TrainConfig, preset_values


def run_cli(*args):
    result = CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def a3c_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli("--algo", "a3c", "--env", "CartPole-v1", "--threads", "2", "--steps", "80000",
                     "--seed", "3", "--lr", "0.002", "--t-max", "8", "--hidden", "16,16",
                     "--eval-every", "40000", "--eval-episodes", "3", "--log-interval", "0.01",
                     "--out", str(out))
    return result, out


def test_train_prints_config_progress_evaluation_and_summary(a3c_run):
    result, out = a3c_run
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The resolved configuration: the options given, and the preset's values for the rest.
    config_line = next(line for line in lines if line.startswith("configuration:"))
    for item in ("algo=a3c", "threads=2", "steps=80000", "seed=3", "lr=0.002", "t_max=8", "hidden=[16, 16]"):
        assert item in config_line
    preset = preset_values("CartPole-v1", "a3c")
    assert f"activation={preset['activation']}" in config_line
    assert any(line.startswith("network: actor_critic heads") for line in lines)
    # Progress lines: step count, speed, episodes, recent return, the policy's entropy and the
    # learning rate (no ε for A3C). CartPole has 2 actions: 0 ≤ H(π) ≤ log 2.
    progress = [line for line in lines if line.startswith("step ")]
    assert progress, result.output
    assert all("steps/s" in p and "episodes" in p and "return(100)" in p and "lr " in p for p in progress)
    assert not any(" eps " in p for p in progress)
    entropies = [float(p.split("entropy ")[1].split()[0]) for p in progress]
    assert all(0.0 <= h <= math.log(2) + 0.005 for h in entropies), entropies
    assert any(line.startswith("evaluation at step ") for line in lines)
    # The summary: status, steps, wall time, speed, final greedy evaluation, where the files are.
    summary = next(line for line in lines if line.startswith("finished: "))
    assert "steps in" in summary and "steps/s" in summary and "episodes" in summary
    assert any(line.startswith("final greedy evaluation: mean return ") and "over 3 episodes" in line
               for line in lines)
    assert any(line.startswith(f"run directory: {out}") for line in lines)


def test_train_writes_the_run_directory(a3c_run):
    result, out = a3c_run
    assert result.exit_code == 0, result.output
    for name in ("config.json", "latest.h5", "best.h5", "episodes.csv", "evaluations.csv"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "config.json").read_text())
    config = TrainConfig.from_dict(saved)
    assert (config.algo, config.threads, config.steps, config.seed, config.t_max, config.hidden) == \
        ("a3c", 2, 80_000, 3, 8, (16, 16))
    with open(out / "episodes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) == {"global_step", "thread", "return", "length", "wall_time"}
    assert {int(r["thread"]) for r in rows} == {0, 1}
    steps = [int(float(r["global_step"])) for r in rows]
    assert max(steps) <= 80_000 + 1
    with open(out / "evaluations.csv") as fh:
        evals = list(csv.DictReader(fh))
    # The periodic evaluation at 40,000 steps and the final one.
    assert len(evals) >= 2 and int(float(evals[-1]["global_step"])) >= 80_000
    assert all(int(float(e["episodes"])) == 3 for e in evals)


@pytest.mark.parametrize("algo", ["nstep-q", "onestep-q", "sarsa"])
def test_train_q_methods_show_epsilon(tmp_path, algo):
    result = run_cli("--algo", algo, "--steps", "60000", "--threads", "1", "--eval-episodes", "1",
                     "--log-interval", "0.001", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert f"algo={algo}" in result.output
    progress = [line for line in result.output.splitlines() if line.startswith("step ")]
    assert progress and all(" eps " in p for p in progress)
    assert not any("entropy" in p for p in progress)
    assert "final greedy evaluation" in result.output


def test_quiet_prints_no_progress(tmp_path):
    result = run_cli("--steps", "2000", "--quiet", "--eval-episodes", "1", "--log-interval", "0.001",
                     "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("step ") for line in result.output.splitlines())
    assert "finished: " in result.output and "final greedy evaluation" in result.output


def test_preset_values_apply_unless_overridden(tmp_path):
    preset = preset_values("Catch-v0", "a3c")
    result = run_cli("--env", "Catch-v0", "--steps", "900", "--threads", "1", "--eval-episodes", "2",
                     "--rms-eps", "0.05", "--quiet", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["network"] == "conv" == preset["network"]
    assert saved["lr"] == preset["lr"]
    assert saved["rms_eps"] == 0.05 != preset.get("rms_eps")
    assert saved["steps"] == 900


def test_gym_option_uses_the_gymnasium_environment(tmp_path):
    result = run_cli("--gym", "--steps", "300", "--threads", "2", "--eval-episodes", "1",
                     "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "environment: CartPole-v1 (gym)" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["gym"] is True


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--algo", "--env", "--threads", "--steps", "--lr", "--gamma", "--t-max", "--seed", "--out",
                   "--beta", "--value-weight", "--normalize-value", "--normalize-advantage", "--value-rate",
                   "--optimizer", "--rms-alpha", "--rms-eps", "--clip-norm",
                   "--target-interval", "--eps-anneal-steps", "--network", "--hidden", "--eval-every",
                   "--eval-episodes", "--gym", "--resume", "--quiet"):
        assert option in result.output, option
    assert "a3c" in result.output and "sarsa" in result.output


def test_asyncrl_train_runs_as_a_program(tmp_path):
    # The installed entry point, in a fresh process, as a user runs it.
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "numba_a3c.cli.main", "train", "--steps", "3000", "--threads", "2",
                           "--eval-episodes", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "configuration: algo=a3c env=CartPole-v1" in proc.stdout
    assert "final greedy evaluation" in proc.stdout
    assert (out / "latest.h5").is_file() and (out / "config.json").is_file()


@pytest.mark.parametrize("env", ["CartPole-v1", "Catch-v0", "Acrobot-v1", "MountainCar-v0"])
def test_every_shipped_preset_resolves_for_every_method(env):
    # Every key of a preset must be a configuration field (a typo would fail here, not in a user's run).
    from numba_a3c.config import ALGORITHMS, resolve

    for algo in ALGORITHMS:
        config = resolve({"env": env, "algo": algo})
        assert (config.env, config.algo) == (env, algo)
        for key, value in preset_values(env, algo).items():
            got = getattr(config, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_train_builds_the_environment_and_the_network_once(tmp_path, monkeypatch):
    # Validation builds the run's parts (numba_a3c/build.py) and the trainer trains those very
    # parts: one environment description and one network per command, not one per step.
    from numba_a3c import build

    calls = {"environment": 0, "network": 0}
    describe, network = build.describe_env, build.build_network

    def counting_describe(*args, **kwargs):
        calls["environment"] += 1
        return describe(*args, **kwargs)

    def counting_network(*args, **kwargs):
        calls["network"] += 1
        return network(*args, **kwargs)

    monkeypatch.setattr(build, "describe_env", counting_describe)
    monkeypatch.setattr(build, "build_network", counting_network)
    result = run_cli("--env", "CartPole-v1", "--threads", "1", "--steps", "200", "--eval-episodes", "1",
                     "--hidden", "8", "--quiet", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert calls == {"environment": 1, "network": 1}
