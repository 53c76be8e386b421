"""``asyncrl bench kernels`` end to end with tiny repeats: the output's structure, not its speed
(performance targets are checked by running the command, never by timed assertions)."""

import json

import pytest
from click.testing import CliRunner

from numba_a3c.cli.main import cli

KEYS = ("forward_s", "segment_s", "update_s", "update_3_passes_s", "segment_update_s")


def test_bench_kernels_json():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "2", "--no-compile-times", "--no-torch",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["repeats"] == 2 and data["t_max"] == 5
    assert data["machine"]["cores"] >= 1 and data["machine"]["numba"]
    assert set(data["networks"]) == {"mlp", "atari", "lstm", "atari-lstm"}
    assert data["networks"]["mlp"]["n_params"] == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2 + 64 + 1
    assert data["networks"]["atari"]["n_params"] == 677_943
    assert data["networks"]["atari-lstm"]["n_params"] == 677_943 + 2 * 256 * 1024 + 1024   # + LSTM W, U, b
    for name, entry in data["networks"].items():
        for key in KEYS:
            assert 0 < entry[key] < 10, f"{name} {key}: {entry[key]}"
        # a segment is five forward passes and more
        assert entry["segment_s"] > entry["forward_s"]
    assert "cold_compile_s" not in data and "torch" not in data


def test_bench_kernels_table():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "1", "--no-compile-times"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for label in ("machine:", "forward (1 observation)", "segment (5 steps fwd+bwd)", "update (shared RMSProp)",
                  "segment + update", "mlp (4,675 params)", "atari (677,943 params)"):
        assert label in out, label
    try:
        import torch  # noqa: F401
        assert "ours/torch" in out
    except ImportError:
        assert "PyTorch comparison skipped: torch is not installed" in out


def test_bench_kernels_rejects_bad_repeats():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "0"])
    assert result.exit_code == 2
    assert "repeats" in result.output


@pytest.mark.slow
def test_bench_kernels_compile_and_startup_times():
    result = CliRunner().invoke(cli, ["bench", "kernels", "--repeats", "1", "--no-torch", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cold_compile_s"] > data["warm_startup_s"] > 0
