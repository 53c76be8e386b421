"""`asyncrl inspect` and `asyncrl eval`, the shipped checkpoints and the documented NumPy reader."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from numba_a3c import checkpoint
from numba_a3c.cli.main import cli
from numba_a3c.config import resolve
from numba_a3c.inspection import find_checkpoint, shipped_checkpoints
from numba_a3c.nn.network import Network
from numba_a3c.trainer import Trainer

DOC = Path(__file__).resolve().parent.parent / "docs" / "checkpoint-format.md"
SHIPPED = ("CartPole-v1-a3c", "Catch-v0-a3c")   # A3C (actor-critic) checkpoints


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_bad_input(result, *fragments):
    """Exit code 2, one line of output that starts with 'Error:' and names the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def cartpole():
    return find_checkpoint("CartPole-v1-a3c")


@pytest.fixture(scope="module")
def catch():
    return find_checkpoint("Catch-v0-a3c")


@pytest.fixture(scope="module")
def q_run(tmp_path_factory):
    """A tiny n-step Q run (it has a target network and ε) in a run directory."""
    run_dir = tmp_path_factory.mktemp("qrun")
    config = resolve(dict(algo="nstep-q", env="CartPole-v1", threads=1, steps=3000, seed=1, eval_every=1500,
                          eval_episodes=2, log_interval=60.0))
    Trainer(config, run_dir=run_dir, final_eval=True).run()
    return run_dir


# ---------------------------------------------------------------------- shipped checkpoints
def test_shipped_checkpoints_are_installed_and_small():
    shipped = shipped_checkpoints()
    assert set(SHIPPED) | {"CartPole-v1-nstep-q", "Pong-v5-a3c"} <= set(shipped)
    for name in shipped:   # the Atari agent is the paper's 677,943 float32 parameters, without optimizer statistics
        assert shipped[name].stat().st_size < (3_000_000 if name.startswith("Pong") else 300_000)
        assert find_checkpoint(name) == shipped[name]
    assert find_checkpoint("catch") == shipped["Catch-v0-a3c"]   # case-insensitive unique prefix
    assert find_checkpoint("catch-v0-a3c.h5") == shipped["Catch-v0-a3c"]
    assert find_checkpoint("cartpole-v1-nstep-q") == shipped["CartPole-v1-nstep-q"]
    assert_bad_input(invoke("eval", "cartpole"), "several shipped checkpoints", "CartPole-v1-a3c",
                     "CartPole-v1-nstep-q")


@pytest.mark.parametrize("name, env, algo, threshold", [("CartPole-v1-a3c", "CartPole-v1", "a3c", 475.0),
                                                        ("CartPole-v1-nstep-q", "CartPole-v1", "nstep-q", 475.0),
                                                        ("Catch-v0-a3c", "Catch-v0", "a3c", 0.9)])
def test_shipped_checkpoints_play_well(name, env, algo, threshold):
    result = invoke("eval", name, "--episodes", 20, "--seed", 5, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["env"] == env and out["algo"] == algo and out["mode"] == "greedy"
    assert len(out["returns"]) == 20
    assert out["mean"] == pytest.approx(np.mean(out["returns"]))
    assert out["mean"] >= threshold


def test_the_shipped_pong_agent_wins():
    # issue 13: `asyncrl eval Pong-v5-a3c` right after install. Greedy with seed 0, the protocol
    # scripts/make_shipped_checkpoints.py checked over 10 episodes; two of them here (about 4,000 steps)
    result = invoke("eval", "Pong-v5-a3c", "--episodes", 2, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["env"] == "ALE/Pong-v5" and out["algo"] == "a3c" and out["mode"] == "greedy"
    assert out["global_step"] <= 10_010_000 and out["mean"] >= 18
    shipped = checkpoint.load(find_checkpoint("Pong-v5-a3c"))
    assert shipped.attrs["optimizer_omitted"]


# ---------------------------------------------------------------------- the documented NumPy reader
def doc_example():
    """The NumPy program of docs/checkpoint-format.md, exactly as the page shows it."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    code = [b for b in blocks if "numpy_policy.py" in b]
    assert len(code) == 1, "docs/checkpoint-format.md must hold the numpy_policy.py example"
    return code[0]


@pytest.mark.parametrize("name", SHIPPED + ("CartPole-v1-nstep-q", "Pong-v5-a3c"))
def test_documented_numpy_reader_matches_the_package(name, tmp_path):
    namespace = {"__name__": "numpy_policy"}
    exec(compile(doc_example(), "numpy_policy.py", "exec"), namespace)
    path = find_checkpoint(name)
    layers, shape, scale = namespace["load_layers"](path)
    ck = checkpoint.load(path)
    net = Network(ck.spec)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 2, size=shape).astype(np.float32) if len(shape) == 3 else \
            rng.normal(size=shape).astype(np.float32)
        outputs = namespace["forward"](layers, shape, scale, x)
        if ck.spec.heads == "q":
            q = net.forward(ck.theta, x[None])
            np.testing.assert_allclose(outputs["q"], q[0], rtol=1e-4, atol=1e-5)
            assert namespace["act"](outputs)[0] == int(np.argmax(q[0]))
            continue
        logits, value = net.forward(ck.theta, x[None])
        np.testing.assert_allclose(outputs["pi"], logits[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(outputs["v"], value, rtol=1e-4, atol=1e-5)
        action, details = namespace["act"](outputs)
        assert action == int(np.argmax(logits[0]))
        assert details["pi"].sum() == pytest.approx(1.0)


def test_documented_numpy_reader_runs_as_a_script(tmp_path, cartpole):
    script = tmp_path / "numpy_policy.py"
    script.write_text(doc_example())
    done = subprocess.run([sys.executable, str(script), str(cartpole)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "greedy action for an all-zero observation:" in done.stdout


def test_every_documented_item_exists(catch, q_run):
    """Each group, dataset and attribute named in the doc's tables is in real checkpoints."""
    text = DOC.read_text(encoding="utf-8")
    for path in (catch, q_run / "latest.h5"):
        with h5py.File(path, "r") as f:
            for name in ("config", "network", "params", "optimizer/g", "optimizer/per_thread", "state/counters",
                         "state/thread_int", "state/thread_float", "state/rng", "state/env_rng",
                         "state/env_state", "state/observation", "log/episodes", "log/evaluations"):
                assert name in f
                assert f"`/{name}" in text or f"`{name.split('/')[-1]}`" in text, name
            for attr in ("format", "format_version", "created", "numba_a3c_version"):
                assert attr in f.attrs and f"`{attr}`" in text
            for attr in ("layer_order", "input_shape", "input_scale", "heads", "n_actions", "n_params", "spec_json"):
                assert attr in f["network"].attrs and f"`{attr}`" in text
            for layer in f["network"].attrs["layer_order"]:
                g = f["params"][layer]
                for attr in ("type", "activation", "input", "index", "kernel", "stride", "input_shape",
                             "output_shape"):
                    assert attr in g.attrs and f"`{attr}`" in text
            for attr in ("global_step", "wall_time", "threads", "at_rest"):
                assert attr in f["state"].attrs and f"`{attr}`" in text
            assert f.attrs["format_version"] == checkpoint.FORMAT_VERSION
            assert f"(version {checkpoint.FORMAT_VERSION})" in text
    with h5py.File(q_run / "latest.h5", "r") as f:
        assert "target_params" in f and list(f["target_params"]) == list(f["params"])


# ---------------------------------------------------------------------- inspect
def test_inspect_text_summary(cartpole):
    result = invoke("inspect", "CartPole-v1-a3c")
    assert result.exit_code == 0, result.output
    out = result.output
    ck = checkpoint.load(cartpole)
    for fragment in ("configuration", "algo=a3c", "env=CartPole-v1", f"global step {ck.global_step:,}",
                     "steps/s", "fc1/W", "pi/b", "v/W", "L2 norm", "optimizer: shared-rmsprop", "shared g",
                     "learning curve", "evaluations:"):
        assert fragment in out, fragment
    plot = [line for line in out.splitlines() if line.strip().startswith("|") or "|" in line[:12]]
    assert sum("*" in line for line in plot) >= 1


def test_inspect_json_matches_the_file(cartpole):
    result = invoke("inspect", cartpole, "--json", "--bins", 10)
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    ck = checkpoint.load(cartpole)
    assert s["config"] == ck.config.to_dict()
    assert s["progress"]["global_step"] == ck.global_step
    assert s["progress"]["episodes"] == len(ck.episodes)
    assert s["progress"]["steps_per_s"] == pytest.approx(ck.global_step / ck.wall_time)
    assert s["file"]["format_version"] == checkpoint.FORMAT_VERSION
    tensors = [t for layer in s["network"]["layers"] for t in layer["tensors"]]
    assert sum(t["params"] for t in tensors) == s["network"]["n_params"] == ck.theta.size
    with h5py.File(cartpole, "r") as f:
        for t in tensors:
            w = f["params"][t["name"]][()].astype(np.float64)
            assert t["shape"] == list(w.shape)
            assert t["mean"] == pytest.approx(w.mean()) and t["std"] == pytest.approx(w.std())
            assert t["min"] == pytest.approx(w.min()) and t["max"] == pytest.approx(w.max())
            assert t["norm"] == pytest.approx(np.linalg.norm(w.ravel()))
        g = f["optimizer/g"][()]
    assert s["optimizer"]["shared_g"]["max"] == pytest.approx(float(g.max()))
    bins = s["learning_curve"]["bins"]
    assert len(bins) == 10 and sum(b["episodes"] for b in bins) == len(ck.episodes)
    first = ck.episodes[ck.episodes[:, 0] < bins[0]["end"], 2]
    assert bins[0]["mean"] == pytest.approx(first.mean())
    assert bins[-1]["mean"] > bins[0]["mean"], "the shipped checkpoint learned"
    assert s["evaluations"]["count"] == len(ck.evaluations)
    assert s["evaluations"]["last"][-1]["global_step"] == int(ck.evaluations[-1, 0])


def test_inspect_run_directory_and_q_checkpoint(q_run):
    result = invoke("inspect", q_run)
    assert result.exit_code == 0, result.output
    assert "algo=nstep-q" in result.output and "epsilon" in result.output and "target network" in result.output
    s = json.loads(invoke("inspect", q_run, "--json").output)
    assert s["file"]["path"] == str(q_run / "latest.h5")
    assert "target_updates" in s["progress"] and "max_abs_difference" in s["network"]["target"]
    assert [layer["name"] for layer in s["network"]["layers"]] == ["fc1", "q"]


def test_q_returns_are_split_by_each_threads_final_epsilon(q_run):
    from numba_a3c.inspection import returns_by_epsilon

    # rows (T, thread, return, length, wall); threads 0 and 2 keep ε 0.1, thread 1 keeps ε 0.5
    episodes = np.array([[10, 0, 1.0, 5, 0], [20, 1, 2.0, 5, 0], [30, 0, 3.0, 5, 0], [40, 2, 4.0, 5, 0],
                         [50, 1, 5.0, 5, 0]])
    groups = returns_by_epsilon(episodes, [0.1, 0.5, 0.1])
    assert groups == [dict(epsilon=0.1, threads=[0, 2], episodes=3, mean_return=pytest.approx(8.0 / 3)),
                      dict(epsilon=0.5, threads=[1], episodes=2, mean_return=3.5)]
    assert returns_by_epsilon(episodes, [0.1, 0.5, 0.1], last=2)[0]["mean_return"] == 3.5   # the last 2: 3 and 4
    assert returns_by_epsilon(episodes[:0], [0.01])[0] == dict(epsilon=0.01, threads=[0], episodes=0, mean_return=None)
    s = json.loads(invoke("inspect", q_run, "--json").output)
    (group,) = s["progress"]["recent_return_by_epsilon"]       # one thread, one final ε
    assert group["threads"] == [0] and group["mean_return"] == pytest.approx(s["progress"]["recent_return"])
    assert "by the threads' final ε" in invoke("inspect", q_run).output


def test_inspect_layer_values(cartpole, q_run):
    result = invoke("inspect", cartpole, "--layer", "fc1/W", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    with h5py.File(cartpole, "r") as f:
        W = f["params/fc1/W"][()]
    assert list(values) == ["fc1/W"] and values["fc1/W"]["shape"] == list(W.shape)
    np.testing.assert_array_equal(np.asarray(values["fc1/W"]["values"], np.float32), W)
    text = invoke("inspect", cartpole, "--layer", "fc1").output
    assert "fc1/W  shape 4x32" in text and "fc1/b  shape 32" in text
    target = json.loads(invoke("inspect", q_run, "--layer", "target/q/b", "--json").output)
    with h5py.File(q_run / "latest.h5", "r") as f:
        np.testing.assert_array_equal(np.asarray(target["target/q/b"]["values"], np.float32),
                                      f["target_params/q/b"][()])


def test_inspect_unknown_layer(cartpole):
    assert_bad_input(invoke("inspect", cartpole, "--layer", "fc9"), "fc9", "valid names", "fc1/W", "pi")
    assert_bad_input(invoke("inspect", cartpole, "--layer", "target/fc1"), "no target network")


def test_inspect_plot(cartpole, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    result = invoke("inspect", cartpole, "--plot", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plot_without_matplotlib_says_how_to_install(cartpole, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # makes `import matplotlib` fail
    result = invoke("inspect", cartpole, "--plot", tmp_path / "curve.png")
    assert_bad_input(result, "pip install 'numba_a3c[plot]'")
    assert not (tmp_path / "curve.png").exists()


# ---------------------------------------------------------------------- eval
def test_eval_text_and_modes(cartpole):
    result = invoke("eval", cartpole, "--episodes", 3)
    assert result.exit_code == 0, result.output
    assert result.output.count("episode ") == 3 and "mean return 500.00" in result.output
    greedy = json.loads(invoke("eval", cartpole, "-n", 4, "--seed", 3, "--json").output)
    again = json.loads(invoke("eval", cartpole, "-n", 4, "--seed", 3, "--json").output)
    assert greedy["returns"] == again["returns"]
    random = json.loads(invoke("eval", cartpole, "-n", 10, "--epsilon", 1.0, "--json").output)
    assert random["mode"] == "epsilon" and random["epsilon"] == 1.0
    assert random["mean"] < 100, "a uniformly random policy cannot balance the pole"
    sampled = json.loads(invoke("eval", cartpole, "-n", 3, "--stochastic", "--json").output)
    assert sampled["mode"] == "stochastic" and len(sampled["returns"]) == 3


def test_eval_refusals(cartpole, q_run):
    assert_bad_input(invoke("eval", cartpole, "--stochastic", "--epsilon", 0.1), "--stochastic")
    assert_bad_input(invoke("eval", q_run, "--stochastic"), "use --epsilon")


def test_eval_record_gif(catch, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    gif = tmp_path / "catch.gif"
    result = invoke("eval", catch, "-n", 2, "--record", gif, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["recording"] == str(gif)
    with Image.open(gif) as im:
        assert im.n_frames == out["lengths"][0] + 1     # the reset frame, then one per step
        assert im.size == (120, 240)


def test_record_without_pillow_says_how_to_install(catch, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    assert_bad_input(invoke("eval", catch, "--record", tmp_path / "x.gif"), "pip install 'numba_a3c[record]'")


# ---------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, cartpole):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.h5").write_text("hello, not HDF5\n")
    with h5py.File(d / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    data = cartpole.read_bytes()
    (d / "truncated.h5").write_bytes(data[: len(data) // 2])
    shutil.copyfile(cartpole, d / "newer.h5")
    with h5py.File(d / "newer.h5", "a") as f:
        f.attrs["format_version"] = checkpoint.FORMAT_VERSION + 1
    # (the shipped file predates checksums; a newer one is read as an edit unless resealed)
    if data.startswith(checkpoint.CHECKSUM_MAGIC):
        checkpoint.reseal(d / "newer.h5")
    (d / "empty_run").mkdir()
    return d


@pytest.mark.parametrize("command", ["inspect", "eval"])
@pytest.mark.parametrize("name, fragments", [
    ("missing.h5", ("no such file", "shipped checkpoints", "CartPole-v1-a3c")),
    ("notes.h5", ("not an HDF5 file",)),
    ("other.h5", ("not a numba_a3c checkpoint",)),
    ("truncated.h5", ("truncated.h5",)),
    ("newer.h5", ("newer", "upgrade numba_a3c")),
    ("empty_run", ("directory without latest.h5",)),
])
def test_bad_input_is_one_line_and_exit_2(bad_files, command, name, fragments):
    assert_bad_input(invoke(command, bad_files / name), *fragments)


def test_bad_input_through_the_installed_command(bad_files):
    """The real entry point: exit code 2 and one line on stderr, no traceback."""
    done = subprocess.run([sys.executable, "-m", "numba_a3c.cli.main", "inspect", str(bad_files / "notes.h5")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_inspect_a_run_paused_before_any_episode(tmp_path):
    config = resolve(dict(algo="a3c", env="CartPole-v1", threads=1, steps=1000, seed=0, eval_every=0,
                          log_interval=60.0))
    result = Trainer(config, run_dir=tmp_path, final_eval=False).run(stop_at=1)
    assert result.status == "paused" and result.episodes == 0
    out = invoke("inspect", tmp_path)
    assert out.exit_code == 0, out.output
    assert "(no finished episodes yet)" in out.output and "evaluations: none" in out.output
    s = json.loads(invoke("inspect", tmp_path, "--json").output)
    assert s["progress"]["logged_episodes"] == 0 and s["progress"]["recent_return"] is None
    assert all(b["mean"] is None for b in s["learning_curve"]["bins"])


@pytest.mark.atari
def test_atari_checkpoint_reads_evaluates_and_records(tmp_path):
    """The format covers the paper's conv net: the NumPy reader, eval --record and inspect on Pong."""
    config = resolve(dict(algo="a3c", env="ALE/Pong-v5", threads=1, steps=100, seed=0, eval_every=0,
                          log_interval=60.0))
    Trainer(config, run_dir=tmp_path, final_eval=False).run()
    path = tmp_path / "latest.h5"
    namespace = {"__name__": "numpy_policy"}
    exec(compile(doc_example(), "numpy_policy.py", "exec"), namespace)
    layers, shape, scale = namespace["load_layers"](path)
    assert shape == (4, 84, 84) and scale == pytest.approx(1 / 255)
    ck = checkpoint.load(path)
    x = np.random.default_rng(1).integers(0, 256, size=shape).astype(np.uint8)
    outputs = namespace["forward"](layers, shape, scale, x)
    logits, value = Network(ck.spec).forward(ck.theta, x[None].astype(np.float32))
    np.testing.assert_allclose(outputs["pi"], logits[0], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(outputs["v"], value, rtol=1e-3, atol=1e-5)
    s = json.loads(invoke("inspect", tmp_path, "--json").output)
    assert [layer["name"] for layer in s["network"]["layers"]] == ["conv1", "conv2", "fc1", "pi", "v"]
    args = ["eval", tmp_path, "-n", 1, "--max-steps", 20, "--json"]
    if _has("PIL"):
        args += ["--record", tmp_path / "pong.gif"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["lengths"] == [20]
    if _has("PIL"):
        from PIL import Image

        with Image.open(tmp_path / "pong.gif") as im:
            assert 1 < im.n_frames <= 21     # pillow merges identical consecutive frames


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None
