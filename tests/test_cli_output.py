"""What ``asyncrl train`` and ``eval`` print says what happened (issue 17): the evaluation policy, --quiet,
--show-config, the summary after --resume, a resumed run already at its budget, output paths checked first,
and TensorBoard event files that read back."""

import json
import re
import struct

import pytest
from click.testing import CliRunner

from numba_a3c.cli.main import cli
from numba_a3c.config import preset_values

TINY = ["--steps", "1000", "--threads", "1", "--hidden", "8", "--eval-episodes", "1"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_an_epsilon_greedy_final_evaluation_is_called_so(tmp_path):
    result = invoke("train", *TINY, "--eval-epsilon", "0.05", "--quiet", "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "final ε-greedy evaluation (ε 0.05): mean return" in result.output
    assert "final greedy" not in result.output


def test_quiet_prints_only_the_summary(tmp_path):
    result = invoke("train", *TINY, "--eval-every", "400", "--log-interval", "0.001", "--quiet",
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("finished: "), result.output
    assert not [line for line in lines if line.startswith(("configuration:", "network:", "step ", "evaluation at"))]
    assert lines[1].startswith("final greedy evaluation") and lines[2].startswith("run directory: ")


def test_show_config_prints_the_resolved_configuration_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--show-config", "--algo", "nstep-q", "--threads", "3", "--out", "somewhere")
    assert result.exit_code == 0, result.output
    config = json.loads(result.output)
    assert config["algo"] == "nstep-q" and config["threads"] == 3
    assert config["lr"] == preset_values("CartPole-v1", "nstep-q")["lr"]
    assert list(tmp_path.iterdir()) == []
    bad = invoke("train", "--show-config", "--lr", "7")
    assert bad.exit_code == 2 and bad.output.startswith("Error: --lr 7") and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    run = tmp_path_factory.mktemp("resume") / "run"
    first = invoke("train", *TINY, "--quiet", "--out", str(run))
    assert first.exit_code == 0, first.output
    second = invoke("train", "--resume", str(run), "--steps", "2000", "--quiet")
    return run, first, second


def test_the_summary_after_resume_separates_this_invocation_from_the_run(resumed):
    run, first, second = resumed
    assert second.exit_code == 0, second.output
    done = int(re.search(r"finished: ([\d,]+) steps", first.output).group(1).replace(",", ""))
    m = re.search(r"finished: ([\d,]+) steps in [\d.]+ s of training this invocation .*; the run so far: "
                  r"([\d,]+) steps, [\d.]+ s of training", second.output)
    assert m, second.output
    session, total = (int(g.replace(",", "")) for g in m.groups())
    assert total >= 2000 and session == total - done


def test_resuming_a_run_at_its_budget_asks_for_more_steps_and_changes_nothing(resumed):
    run = resumed[0]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "already reached its budget" in result.output
    assert "give a larger --steps" in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_output_paths_are_checked_before_any_work(tmp_path):
    from numba_a3c.validation import ConfigError, check_output_file

    with pytest.raises(ConfigError, match="--plot .*: the directory .* does not exist"):
        check_output_file("--plot", tmp_path / "missing" / "curve.png")
    with pytest.raises(ConfigError, match="is a directory"):
        check_output_file("--record", tmp_path)
    check_output_file("--record", tmp_path / "ok.gif")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(cli, ["train", *TINY, "--tensorboard", str(tmp_path / "file"),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and not (tmp_path / "run").exists(), result.output
    # checked first, with or without the optional extras installed
    result = CliRunner().invoke(cli, ["eval", "CartPole-v1-a3c", "--record", str(tmp_path / "no" / "x.gif")])
    assert result.exit_code == 2 and "does not exist" in result.output and "episode" not in result.output
    result = CliRunner().invoke(cli, ["inspect", "CartPole-v1-a3c", "--plot", str(tmp_path / "no" / "c.png")])
    assert result.exit_code == 2 and "--plot" in result.output and "does not exist" in result.output


def test_help_texts_use_the_symbols_they_mean():
    assert "with probability ε" in invoke("eval", "--help").output


def read_scalars(folder):
    """{tag: [(step, value)]} from the TensorBoard event files under ``folder`` (TFRecord framing:
    length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars


def test_tensorboard_writes_the_progress_scalars_and_evaluations(tmp_path):
    pytest.importorskip("tensorboardX", reason="needs the 'tensorboard' extra (tensorboardX)")
    # 600k steps: long enough for several 0.01 s progress reports even where 2 threads run 300k+ steps/s
    result = invoke("train", "--steps", "600000", "--threads", "2", "--hidden", "8", "--eval-every", "200000",
                    "--eval-episodes", "2", "--log-interval", "0.01", "--quiet", "--out", str(tmp_path / "run"),
                    "--tensorboard", str(tmp_path / "tb"))
    assert result.exit_code == 0, result.output
    scalars = read_scalars(tmp_path / "tb")
    for tag in ("train/return", "train/episode_length", "train/entropy", "train/value", "train/loss",
                "train/grad_norm", "train/lr", "train/steps_per_s", "eval/mean_return", "eval/max_return"):
        assert scalars.get(tag), (tag, sorted(scalars))
    steps = [s for s, _ in scalars["train/lr"]]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] <= 600_000 + 2 * 5
    evals = [s for s, _ in scalars["eval/mean_return"]]
    assert evals == sorted(evals) and evals[-1] >= 600_000, evals     # the final evaluation is the last
    assert all(v > 0 for _, v in scalars["train/episode_length"])
