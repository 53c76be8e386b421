"""Checkpoints: round trip, exact resume, a plain-h5py reader, atomic saving and bad files."""

import json

import h5py
import numpy as np
import pytest

from numba_a3c import checkpoint
from numba_a3c.algorithms.state import C_T
from numba_a3c.checkpoint import CheckpointError
from numba_a3c.config import resolve
from numba_a3c.trainer import Trainer


def small_config(algo="a3c", **kw):
    values = dict(algo=algo, env="CartPole-v1", threads=1, steps=12_000, seed=3, eval_every=0, eval_episodes=2,
                  log_interval=60.0)
    values.update(kw)
    return resolve(values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    trainer = Trainer(small_config("nstep-q", steps=6000), run_dir=run_dir, final_eval=True)
    trainer.run()
    return trainer, run_dir


def test_round_trip_gives_identical_arrays_and_config(trained):
    trainer, run_dir = trained
    ck = checkpoint.load(run_dir / "latest.h5")
    sh = trainer.shared
    assert ck.config == trainer.config
    assert ck.spec == trainer.network.spec
    np.testing.assert_array_equal(ck.theta, sh.theta)
    np.testing.assert_array_equal(ck.theta_target, sh.theta_target)
    np.testing.assert_array_equal(ck.opt_shared, sh.opt_shared)
    np.testing.assert_array_equal(ck.counters, sh.counters)
    np.testing.assert_array_equal(ck.thread_i, sh.thread_i)
    np.testing.assert_array_equal(ck.thread_f, sh.thread_f)
    np.testing.assert_array_equal(ck.rng, sh.rng)
    np.testing.assert_array_equal(ck.env_state, sh.env_state)
    assert ck.episodes.shape == (len(trainer.episode_rows), 5)
    assert ck.global_step == int(sh.counters[C_T]) >= 6000
    assert ck.attrs["format_version"] == checkpoint.FORMAT_VERSION


@pytest.mark.parametrize("algo", ["a3c", "sarsa"])
def test_resume_equals_uninterrupted_run(tmp_path, algo):
    whole = Trainer(small_config(algo), final_eval=False)
    whole.run()
    first = Trainer(small_config(algo), run_dir=tmp_path, final_eval=False)
    result = first.run(stop_at=5_000)
    assert result.status == "paused"
    assert 5_000 <= result.steps < 6_000
    second = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    second.run()
    np.testing.assert_array_equal(second.shared.theta, whole.shared.theta)
    np.testing.assert_array_equal(second.shared.opt_shared, whole.shared.opt_shared)
    assert second.shared.counters[C_T] == whole.shared.counters[C_T]
    np.testing.assert_array_equal(second.shared.thread_i, whole.shared.thread_i)
    strip = [r[:4] for r in whole.episode_rows]
    assert [r[:4] for r in second.episode_rows] == strip


def test_resume_refuses_contradicting_options(trained):
    _, run_dir = trained
    with pytest.raises(ValueError, match="--lr"):
        Trainer.from_checkpoint(run_dir / "latest.h5", {"lr": 0.5})
    with pytest.raises(ValueError, match="below"):
        Trainer.from_checkpoint(run_dir / "latest.h5", {"steps": 10})


def numpy_forward(path, x):
    """A reader that knows only the documented format: h5py + NumPy, no numba_a3c."""
    with h5py.File(path, "r") as f:
        order = [n.decode() if isinstance(n, bytes) else n for n in f["network"].attrs["layer_order"]]
        scale = f["network"].attrs["input_scale"]
        outputs = {"observation": np.asarray(x, np.float64) * scale}
        for name in order:
            g = f["params"][name]
            W, b = g["W"][()].astype(np.float64), g["b"][()].astype(np.float64)
            inp = outputs[g.attrs["input"]]
            if g.attrs["type"] == "dense":
                y = inp.reshape(-1) @ W + b
            else:
                s = int(g.attrs["stride"])
                O, C, kh, kw = W.shape
                img = inp.reshape(C, *inp.shape[-2:]) if inp.ndim == 3 else inp
                Ho, Wo = (img.shape[1] - kh) // s + 1, (img.shape[2] - kw) // s + 1
                y = np.zeros((O, Ho, Wo))
                for p in range(Ho):
                    for q in range(Wo):
                        patch = img[:, p * s:p * s + kh, q * s:q * s + kw]
                        y[:, p, q] = np.tensordot(W, patch, axes=3) + b
            act = g.attrs["activation"]
            y = np.maximum(y, 0) if act == "relu" else np.tanh(y) if act == "tanh" else y
            outputs[name] = y
        return outputs


def test_plain_h5py_reader_matches_package_forward(trained):
    trainer, run_dir = trained
    x = np.random.default_rng(0).normal(size=4).astype(np.float32)
    out = numpy_forward(run_dir / "latest.h5", x)
    q = trainer.network.forward(trainer.shared.theta, x[None])
    np.testing.assert_allclose(out["q"], q[0], rtol=1e-5, atol=1e-6)


def test_failed_save_leaves_previous_checkpoint_intact(trained, tmp_path, monkeypatch):
    trainer, run_dir = trained
    path = tmp_path / "latest.h5"
    trainer.save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_params", broken)
    with pytest.raises(OSError):
        trainer.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.h5"], "no temporary file may be left behind"
    checkpoint.load(path)


def test_bad_files_get_one_line_reasons(trained, tmp_path):
    _, run_dir = trained
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an HDF5 file"):
        checkpoint.load(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(CheckpointError, match="not a numba_a3c checkpoint"):
        checkpoint.load(other)
    data = (run_dir / "latest.h5").read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        checkpoint.load(truncated)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(data)
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = checkpoint.FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="its SHA-256 checksum does not match"):
        checkpoint.load(newer)                       # an edit is caught like damage ...
    checkpoint.reseal(newer)                         # ... until it is accepted
    with pytest.raises(CheckpointError, match="newer than this numba_a3c"):
        checkpoint.load(newer)
    for at in (40, len(data) // 3, len(data) - 5):   # the checksum itself, the middle, the end
        flipped = bytearray(data)
        flipped[at] ^= 0x10
        damaged = tmp_path / "flipped.h5"
        damaged.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match="is damaged: its SHA-256 checksum does not match"):
            checkpoint.load(damaged)
    with pytest.raises(CheckpointError, match="is damaged: its SHA-256 checksum"):
        checkpoint.load(truncated)
    with pytest.raises(CheckpointError, match="directory"):
        checkpoint.load(tmp_path)


def test_config_is_readable_without_the_package(trained):
    _, run_dir = trained
    with h5py.File(run_dir / "latest.h5", "r") as f:
        cfg = json.loads(f["config"].attrs["json"])
        assert cfg["algo"] == "nstep-q" and f["config"].attrs["env"] == "CartPole-v1"
        assert f["params/fc1"].attrs["type"] == "dense"
        assert f["log/episodes"].maxshape == (None, 5)


def test_a_copy_without_the_optimizer_evaluates_inspects_and_resumes(trained, tmp_path):
    """copy_without_optimizer (what ships a trained agent): the same θ, θ⁻, config and log; empty
    optimizer arrays with the reason in the file; inspect says so; the standalone reader still
    runs it; a resume starts the statistics from zero and trains on."""
    from numba_a3c.inspection import format_summary, summarize

    trainer, run_dir = trained
    src = run_dir / "latest.h5"
    dest = checkpoint.copy_without_optimizer(src, tmp_path / "shipped.h5")
    full, small = checkpoint.load(src), checkpoint.load(dest)
    np.testing.assert_array_equal(small.theta, full.theta)
    np.testing.assert_array_equal(small.theta_target, full.theta_target)
    np.testing.assert_array_equal(small.episodes, full.episodes)
    np.testing.assert_array_equal(small.counters, full.counters)
    assert small.config == full.config
    assert small.opt_shared.size == 0 and small.opt_private.size == 0
    assert small.attrs["optimizer_omitted"] and not full.attrs["optimizer_omitted"]
    with h5py.File(dest, "r") as f:
        assert "zero" in f["optimizer"].attrs["omitted"]
    x = np.random.default_rng(1).normal(size=4).astype(np.float32)
    np.testing.assert_allclose(numpy_forward(dest, x)["q"], numpy_forward(src, x)["q"])
    assert "statistics not in this file" in format_summary(summarize(small))

    resumed = Trainer.from_checkpoint(dest, {"steps": small.global_step + 500}, final_eval=False)
    assert resumed.optimizer_restarted and not resumed.shared.opt_shared.any()
    result = resumed.run()
    assert result.status == "finished" and resumed.shared.opt_shared.any()
    with pytest.raises(CheckpointError):
        checkpoint.copy_without_optimizer(tmp_path / "missing.h5", tmp_path / "x.h5")

