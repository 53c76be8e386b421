"""The Python API (numba_a3c.train / load / Agent): the examples of docs/python-api.md run as written,
and the API refuses what the CLI refuses, with the same message."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import numba_a3c
from numba_a3c.cli.main import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def doc_blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_python_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "python_api_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), scope)
    out = capsys.readouterr().out
    # the first example trains on the class defined in the page and learns it (16 is perfect, chance 8)
    assert float(out.splitlines()[0]) >= 13.0, out
    assert (tmp_path / "runs" / "sign" / "latest.h5").exists() and (tmp_path / "sign.h5").exists()
    assert "--lr 5: the learning rate must be in (0, 1]" in out
    early = scope["run"]
    # the early-stopping example (relu, 2 threads) stopped within 6.7k-15.6k steps over seeds 0-7 on a slower
    # machine; the evaluation runs beside the workers, so a fast one trains on while it runs (200k more seen)
    assert early.status == "stopped" and early.stopped_by == "on_eval" and early.steps < 2_000_000, out


@pytest.mark.parametrize("options, cli_args", [
    (dict(lr=5.0), ["--lr", "5"]),
    (dict(threads=0), ["--threads", "0"]),
    (dict(t_max=5000), ["--t-max", "5000"]),
    (dict(eval_epsilon=2.0), ["--eval-epsilon", "2"]),
])
def test_the_api_refuses_what_the_cli_refuses_with_the_same_message(tmp_path, options, cli_args):
    with pytest.raises(numba_a3c.ConfigError) as exc:
        numba_a3c.train("CartPole-v1", "a3c", out=str(tmp_path / "api"), **options)
    result = CliRunner().invoke(cli, ["train", *cli_args, "--out", str(tmp_path / "cli")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {exc.value}"
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_unknown_environments_and_options_are_config_errors(tmp_path):
    import gymnasium

    with pytest.raises(numba_a3c.ConfigError, match="Did you mean CartPole-v1"):
        numba_a3c.train("CartPole-v7", out=str(tmp_path / "r"))
    with pytest.raises(numba_a3c.ConfigError, match="unknown option 'stpes'. Did you mean steps"):
        numba_a3c.train("CartPole-v1", stpes=10, out=str(tmp_path / "r"))
    with pytest.raises(numba_a3c.ConfigError, match="the Q methods need discrete actions. Use --algo a3c"):
        numba_a3c.train(lambda: gymnasium.make("Pendulum-v1"), algo="nstep-q", out=str(tmp_path / "r"))
    with pytest.raises(numba_a3c.ConfigError, match="returned a int, not a gymnasium.Env"):
        numba_a3c.train(lambda: 3, out=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def make_short_cartpole():
    import gymnasium

    return gymnasium.wrappers.TimeLimit(gymnasium.make("CartPole-v1").unwrapped, 50)


def test_a_callable_made_checkpoint_says_it_cannot_be_rebuilt_from_the_cli(tmp_path):
    run = numba_a3c.train(make_short_cartpole, steps=500, threads=1, hidden=(8,), eval_episodes=1,
                          out=str(tmp_path / "run"))
    assert run.status == "finished" and run.config.env == "python:make_short_cartpole"
    assert "cannot rebuild" in json.loads((tmp_path / "run" / "config.json").read_text())["env_note"]
    result = CliRunner().invoke(cli, ["eval", str(run.checkpoint)])
    assert result.exit_code == 2 and "was made by a Python callable" in result.output
    assert len(result.output.strip().splitlines()) == 1
    ev = numba_a3c.load(run.checkpoint, env=make_short_cartpole).evaluate(episodes=2)
    assert ev["episodes"] == 2 and max(ev["lengths"]) <= 50
    resumed = numba_a3c.train(make_short_cartpole, resume=run.run_dir, steps=1000)
    assert resumed.status == "finished" and resumed.steps >= 1000


def test_predict_and_act_agree_with_asyncrl_eval():
    agent = numba_a3c.load("CartPole-v1-a3c")
    obs = np.array([0.01, -0.02, 0.03, 0.04], np.float32)
    action, state = agent.predict(obs)
    assert state is None and action == agent.act(obs) and action in (0, 1)
    batch, _ = agent.predict(np.stack([obs, -obs]))
    assert batch.shape == (2,) and batch[0] == action
    ev = agent.evaluate(episodes=3, seed=4)
    result = CliRunner().invoke(cli, ["eval", "CartPole-v1-a3c", "-n", "3", "--seed", "4", "--json"])
    cli_ev = json.loads(result.output)
    for key in ("returns", "lengths", "mean", "std", "global_step", "mode", "episodes", "checkpoint"):
        assert ev[key] == cli_ev[key], key
    with pytest.raises(ValueError, match="observation of shape"):
        agent.act(np.zeros(3))


def test_train_writes_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra (tensorboardX)")
    from test_cli_output import read_scalars

    run = numba_a3c.train("CartPole-v1", steps=40_000, hidden=(8,), eval_every=20_000, eval_episodes=2,
                          log_interval=0.01, out=str(tmp_path / "run"), tensorboard=str(tmp_path / "tb"))
    scalars = read_scalars(tmp_path / "tb")
    assert len(scalars["train/return"]) == len([p for p in run.progress if p.recent_return == p.recent_return])
    assert [s for s, _ in scalars["eval/mean_return"]][-1] == run.final_eval.steps


def test_a_missing_tensorboard_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(numba_a3c.ConfigError, match=r"pip install 'numba_a3c\[tensorboard\]'"):
        numba_a3c.train("CartPole-v1", steps=100, out=str(tmp_path / "run"), tensorboard=str(tmp_path / "tb"))
    result = CliRunner().invoke(cli, ["train", "--steps", "100", "--out", str(tmp_path / "run"),
                                      "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "numba_a3c[tensorboard]" in result.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()


def test_a_run_directory_in_use_is_a_config_error(tmp_path):
    import numba_a3c.rundir as rundir

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = rundir.acquire(run_dir)
    try:
        with pytest.raises(numba_a3c.ConfigError, match="in use|is used|held"):
            numba_a3c.train("CartPole-v1", steps=100, out=str(run_dir), force=True)
    finally:
        lock.release()
