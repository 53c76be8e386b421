"""scripts/make_shipped_checkpoints.py --from RUN: shipping a finished run's checkpoint."""

import pytest
from scripts_loader import load_script

from numba_a3c import checkpoint
from numba_a3c.config import resolve
from numba_a3c.trainer import Trainer


@pytest.fixture(scope="module")
def script():
    return load_script("make_shipped_checkpoints")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    options = dict(algo="a3c", env="Catch-v0", threads=1, steps=30_000, eval_every=0)
    Trainer(resolve(options), run_dir=run_dir, final_eval=False).run()
    return options, run_dir


def test_a_run_ships_without_its_optimizer_when_it_plays_well_enough(script, run, tmp_path, monkeypatch, capsys):
    options, run_dir = run
    monkeypatch.setitem(script.FROM_RUNS, "Catch-v0-test", (options, "asyncrl train ...", -1.0, 5, 30_000))
    assert script.main(["Catch-v0-test", "--from", str(run_dir), "--out", str(tmp_path)]) == 0
    shipped = checkpoint.load(tmp_path / "Catch-v0-test.h5")
    assert shipped.attrs["optimizer_omitted"]
    out = capsys.readouterr().out
    assert "greedy mean return" in out and "over 5 episodes (seed 0" in out


def test_below_the_threshold_nothing_is_shipped(script, run, tmp_path, monkeypatch, capsys):
    options, run_dir = run
    monkeypatch.setitem(script.FROM_RUNS, "Catch-v0-test", (options, "asyncrl train ...", 2.0, 5, 30_000))  # max is 1
    assert script.main(["Catch-v0-test", "--from", str(run_dir), "--out", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert not (tmp_path / "Catch-v0-test.h5").exists()


def test_a_run_of_another_command_is_refused(script, run, tmp_path, monkeypatch):
    options, run_dir = run
    monkeypatch.setitem(script.FROM_RUNS, "Catch-v0-test", (dict(options, lr=0.5), "asyncrl train --lr 0.5", 0.0, 5,
                                                               30_000))
    with pytest.raises(SystemExit, match="lr is"):
        script.main(["Catch-v0-test", "--from", str(run_dir), "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_a_run_continued_past_the_commands_budget_is_refused(script, run, tmp_path, monkeypatch):
    options, run_dir = run
    monkeypatch.setitem(script.FROM_RUNS, "Catch-v0-test", (options, "asyncrl train --stop-at 1000", -1.0, 5, 1_000))
    with pytest.raises(SystemExit, match="trained for 30,000 agent steps"):
        script.main(["Catch-v0-test", "--from", str(run_dir), "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())
