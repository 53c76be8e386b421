"""scripts/check_presets.py --generic: the generic defaults over several environments, one table."""

import pytest
from scripts_loader import load_script


@pytest.fixture(scope="module")
def check_presets():
    return load_script("check_presets")


def test_generic_mode_prints_one_row_per_environment_and_method(check_presets, capsys):
    code = check_presets.main(["--generic", "--env", "CartPole-v1,Acrobot-v1", "--gym", "--algos", "a3c,sarsa",
                               "--seeds", "0,1", "--threads", "1", "--set", "steps=300", "--set", "eval_episodes=1"])
    out = capsys.readouterr().out
    assert code == 1                                   # 300 steps solve nothing: the check says so
    assert "generic defaults (preset default.json" in out and "steps=300" in out
    table = [line for line in out.splitlines() if line.startswith("| ") and "environment" not in line]
    assert [row.split(" | ")[:2] for row in table] == [["| CartPole-v1 --gym", "a3c"], ["| CartPole-v1 --gym", "sarsa"],
                                                      ["| Acrobot-v1 --gym", "a3c"], ["| Acrobot-v1 --gym", "sarsa"]]
    assert "0/2 (>= 475)" in table[0] and "(>= -100)" in table[2]   # gymnasium's reward thresholds
    assert all(len(row.split(" | ")[3].split(", ")) == 2 for row in table)   # a greedy mean per seed


def test_generic_mode_refuses_a_sweep(check_presets, capsys):
    with pytest.raises(SystemExit) as exit_:
        check_presets.main(["--generic", "--env", "CartPole-v1", "--set", "lr=0.001,0.003"])
    assert exit_.value.code == 2 and "not a sweep" in capsys.readouterr().err


def test_generic_mode_reports_a_diverged_run_in_its_row(check_presets, capsys):
    # docs/robustness.md's divergence: n-step Q, lr 1, no clipping, momentum SGD
    code = check_presets.main(["--generic", "--env", "CartPole-v1", "--gym", "--algos", "nstep-q", "--seeds", "1",
                               "--threads", "1", "--set", "steps=20000", "--set", "lr=1", "--set", "clip_norm=0",
                               "--set", "optimizer=momentum", "--set", "eval_episodes=1"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| CartPole")]
    assert code == 1 and len(table) == 1 and "| nstep-q | 0/1 (>= 475) | diverged |" in table[0]


def test_set_overrides_the_scripts_own_choices(check_presets, capsys):
    # the script passes eval_every=0 and a quiet log_interval itself; --set of either once raised
    # "dict() got multiple values for keyword argument"
    code = check_presets.main(["--env", "CartPole-v1", "--algos", "a3c", "--seeds", "1", "--threads", "1",
                               "--set", "steps=300", "--set", "eval_every=100", "--set", "eval_episodes=1",
                               "--set", "log_interval=100"])
    out = capsys.readouterr().out
    assert code == 1 and " eval_every=100 " in out and "passed 0/1" in out
