"""A3C's Gaussian policy for Box actions: the head's layout, float64 finite differences of the
whole network + Gaussian loss, the sampler and the action scaling, and the kernels a worker runs."""

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import numba_a3c
from numba_a3c import checkpoint
from numba_a3c.algorithms.policies import action_bounds_array, sample_gaussian, scale_action
from numba_a3c.algorithms.state import CF_SIZE
from numba_a3c.cli.main import cli
from numba_a3c.config import resolve
from numba_a3c.inspection import find_checkpoint
from numba_a3c.nn.losses import VAR_MIN, gaussian_a3c_loss
from numba_a3c.nn.network import Network, NetworkSpec, backward_rows, backward_scratch_size, forward_row, mlp_spec
from numba_a3c.rng import new_rng
from numba_a3c.trainer import Trainer

H = 1e-6
DOC = Path(__file__).resolve().parent.parent / "docs" / "checkpoint-format.md"


def gaussian_spec(obs_dim=3, D=2, hidden=(6, 5), activation="tanh", separate_value=False):
    spec = mlp_spec(obs_dim, D, hidden, activation)
    return NetworkSpec(spec.input_shape, D, spec.body, "gaussian", action_low=(-2.0,) * D, action_high=(2.0,) * D,
                       separate_value=separate_value)


def test_gaussian_layout_and_spec_round_trip():
    net = Network(gaussian_spec())
    assert [p.name for p in net.params] == ["fc1/W", "fc1/b", "fc2/W", "fc2/b", "mu/W", "mu/b",
                                            "sigma/W", "sigma/b", "v/W", "v/b"]
    assert net.out_pi == net.out_q == -1
    assert (net.out_sigma - net.out_mu, net.out_v - net.out_sigma) == (2, 2)
    # The sampled-action slot is not a layer output: backward never zeroes or reads it.
    assert net.out_action >= net.activation_size and net.out_action + 2 <= net.workspace_size
    d = net.spec.to_dict()
    assert d["heads"] == "gaussian" and d["action_low"] == [-2.0, -2.0] and d["action_high"] == [2.0, 2.0]
    assert NetworkSpec.from_dict(d) == net.spec
    assert "action_low" not in mlp_spec(3, 2).to_dict(), "a discrete network's dict is unchanged"
    with pytest.raises(ValueError, match="action bounds"):
        Network(NetworkSpec((3,), 2, (), "gaussian", action_low=(-1.0,), action_high=(1.0,)))


def test_forward_gives_mean_variance_and_value():
    net = Network(gaussian_spec())
    theta = net.init_params(0) + np.random.default_rng(0).standard_normal(net.n_params).astype(np.float32) * 0.1
    mu, var, v = net.forward(theta, np.ones((4, 3), np.float32))
    assert mu.shape == var.shape == (4, 2) and v.shape == (4,)
    assert np.all(var >= VAR_MIN)
    s = net.forward(theta, np.ones((1, 3), np.float32))
    np.testing.assert_allclose(s[1], var[:1], rtol=1e-6)


def test_separate_value_tower_layout():
    net = Network(gaussian_spec(hidden=(6, 5), activation="relu", separate_value=True))
    assert [p.name for p in net.params] == ["fc1/W", "fc1/b", "fc2/W", "fc2/b", "mu/W", "mu/b", "sigma/W",
                                            "sigma/b", "vfc1/W", "vfc1/b", "vfc2/W", "vfc2/b", "v/W", "v/b"]
    reads = {layer["name"]: layer["input"] for layer in net.layers}
    assert reads == {"fc1": "observation", "fc2": "fc1", "mu": "fc2", "sigma": "fc2", "vfc1": "observation",
                     "vfc2": "vfc1", "v": "vfc2"}
    assert NetworkSpec.from_dict(net.spec.to_dict()) == net.spec
    discrete = Network(NetworkSpec((4,), 2, mlp_spec(4, 2, (3,)).body, "actor_critic", separate_value=True))
    assert [layer["input"] for layer in discrete.layers] == ["observation", "fc1", "observation", "vfc1"]


@pytest.mark.parametrize("separate_value", [False, True])
def test_whole_network_and_gaussian_loss_gradients(separate_value):
    """forward_row → gaussian_a3c_loss → backward_rows in float64 against central differences of
    the loss written independently with NumPy (log N(a; μ, σ²), entropy ½ log(2πeσ²), ½(R − V)²),
    the advantage held constant in the policy term as A3C does; with the value head on the shared
    body, and on a tower of its own."""
    net = Network(gaussian_spec(obs_dim=3, D=2, hidden=(6, 5), activation="tanh", separate_value=separate_value))
    rng = np.random.default_rng(7)
    theta = net.init_params(3, np.float64) + rng.standard_normal(net.n_params) * 0.3
    n, D, beta = 4, 2, 0.05
    obs = rng.standard_normal((n + 1, net.input_size))   # one row more than the segment
    _, ws, delta = net.buffers(n + 1, np.float64)
    for i in range(n + 1):
        forward_row(net.table, theta, obs, ws, i)
    mu_o, sg_o, v_o, a_o = net.out_mu, net.out_sigma, net.out_v, net.out_action
    ws[:, a_o:a_o + D] = ws[:, mu_o:mu_o + D] + rng.standard_normal((n + 1, D)) * 1.3  # "sampled" actions
    actions = ws[:n, a_o:a_o + D].copy()
    returns = rng.standard_normal(n + 1).astype(np.float32).astype(np.float64)
    grads = np.zeros_like(theta)
    gaussian_a3c_loss(ws[:, mu_o:mu_o + D], ws[:, sg_o:sg_o + D], ws[:, v_o:v_o + 1], ws[:, a_o:a_o + D], returns,
                      beta, 1.0, 1.0, delta[:, mu_o:mu_o + D], delta[:, sg_o:sg_o + D], delta[:, v_o:v_o + 1], n)
    backward_rows(net.table, theta, grads, obs, ws, delta, n, np.full(backward_scratch_size(net.table, n), np.nan))
    advantage = returns[:n] - ws[:n, v_o]

    def loss(t):
        w = np.zeros_like(ws)
        for i in range(n):
            forward_row(net.table, t, obs, w, i)
        mu, s, v = w[:n, mu_o:mu_o + D], w[:n, sg_o:sg_o + D], w[:n, v_o]
        var = np.logaddexp(0.0, s) + float(VAR_MIN)
        logp = -0.5 * ((actions - mu) ** 2 / var + np.log(2 * np.pi * var))
        entropy = 0.5 * (np.log(2 * np.pi * var) + 1.0)
        return float(np.sum(-advantage[:, None] * logp) - beta * entropy.sum() + np.sum(0.5 * (returns[:n] - v) ** 2))

    for p in net.params:
        num = np.zeros(p.size)
        for k in range(p.size):
            t = theta.copy()
            t[p.offset + k] += H
            up = loss(t)
            t[p.offset + k] -= 2 * H
            num[k] = (up - loss(t)) / (2 * H)
        ana = grads[p.offset:p.offset + p.size]
        bad = np.abs(ana - num) > 1e-7 + 1e-5 * np.abs(num)
        assert not bad.any(), (f"gradient of {p.name} is wrong at entry {np.flatnonzero(bad)[0]}: backward "
                               f"{ana[bad][0]!r}, finite differences {num[bad][0]!r}")
        assert np.abs(ana).sum() > 0, f"{p.name} got no gradient"


def test_action_scaling_clips_only_what_the_environment_gets():
    cf = np.concatenate([np.zeros(CF_SIZE), action_bounds_array((-2.0, 0.0, -np.inf), (2.0, 1.0, np.inf))])
    np.testing.assert_array_equal(cf[CF_SIZE:], [0.0, 2.0, 0.5, 0.5, 0.0, 0.0])
    a = np.array([0.5, -3.0, 7.5], np.float32)
    out = np.zeros(3, np.float32)
    scale_action(a, cf, out)
    np.testing.assert_array_equal(out, [1.0, 0.0, 7.5])     # 2·0.5; clipped to −1 → low; unbounded: as is
    np.testing.assert_array_equal(a, [0.5, -3.0, 7.5])      # the sample itself is not clipped


def test_sample_gaussian_has_the_heads_mean_and_variance():
    rng = new_rng(3)
    mu = np.array([0.7, -1.5], np.float32)
    s = np.array([-2.0, 1.0], np.float32)
    var = np.logaddexp(0.0, s.astype(np.float64)) + float(VAR_MIN)
    out = np.zeros(2, np.float32)
    samples = np.zeros((20000, 2))
    for i in range(samples.shape[0]):
        sample_gaussian(mu, s, rng, out)
        samples[i] = out
    # 20,000 samples: the standard error of the mean is σ/141, of the variance ~1 % of it.
    assert np.all(np.abs(samples.mean(axis=0) - mu) < 4 * np.sqrt(var / 20000)), samples.mean(axis=0)
    np.testing.assert_allclose(samples.var(axis=0), var, rtol=0.05)


# ----------------------------------------------------------------------------- a Pendulum-v1 run end to end
@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    """A tiny A3C run on native Pendulum-v1 (one thread, seeded) in a run directory."""
    run_dir = tmp_path_factory.mktemp("pendulum") / "run"
    config = resolve(dict(algo="a3c", env="Pendulum-v1", threads=1, steps=2000, seed=3, eval_episodes=2,
                          log_interval=60.0, hidden=(16,)))
    result = Trainer(config, run_dir=run_dir, final_eval=True).run()
    assert result.status == "finished", result.error
    return run_dir


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_checkpoint_holds_the_head_type_and_action_bounds(pendulum_run):
    with h5py.File(pendulum_run / "latest.h5", "r") as f:
        net = f["network"]
        assert net.attrs["heads"] == "gaussian" and int(net.attrs["n_actions"]) == 1
        np.testing.assert_array_equal(net.attrs["action_low"], [-2.0])
        np.testing.assert_array_equal(net.attrs["action_high"], [2.0])
        assert list(f["params"]) == ["fc1", "mu", "sigma", "v", "vfc1"]   # the preset's own value tower
    ck = checkpoint.load(pendulum_run / "latest.h5")
    assert ck.spec.heads == "gaussian" and ck.spec.action_low == (-2.0,) and ck.spec.action_high == (2.0,)


def test_same_seed_same_parameters(tmp_path):
    # One thread, a fixed seed: the Gaussian samples come from the thread's seeded generator.
    config = resolve(dict(algo="a3c", env="Pendulum-v1", threads=1, steps=1000, seed=5, hidden=(8,),
                          log_interval=60.0))
    trainers = [Trainer(config, run_dir=None, final_eval=False) for _ in range(2)]
    for trainer in trainers:
        assert trainer.run().status == "finished"
    np.testing.assert_array_equal(trainers[0].shared.theta, trainers[1].shared.theta)
    assert not np.array_equal(trainers[0].shared.theta, trainers[0].network.init_params(5)), "the run trained"


def test_eval_greedy_is_the_mean_action_and_stochastic_samples(pendulum_run):
    greedy = [json.loads(invoke("eval", pendulum_run, "-n", 2, "--seed", s, "--json").output) for s in (0, 0)]
    assert greedy[0]["mode"] == "greedy" and greedy[0]["returns"] == greedy[1]["returns"]
    assert greedy[0]["lengths"] == [200, 200]
    sampled = json.loads(invoke("eval", pendulum_run, "-n", 2, "--stochastic", "--json").output)
    assert sampled["mode"] == "stochastic" and sampled["returns"] != greedy[0]["returns"]
    text = invoke("eval", pendulum_run, "-n", 1)
    assert text.exit_code == 0 and "greedy (the mean action μ) policy" in text.output, text.output
    # The mean action, as the Python API gives it: μ of the observation as the run normalised it
    # (the preset normalises observations), clipped to [−1, 1] and scaled to [−2, 2].
    agent = numba_a3c.load(pendulum_run)
    obs = np.array([1.0, 0.0, 0.5], np.float32)
    seen = obs.copy()
    agent.checkpoint.frozen_observations().apply(seen)
    assert not np.array_equal(seen, obs)
    mu, _, _ = agent.network.forward(agent.checkpoint.theta, seen[None])
    np.testing.assert_allclose(agent.act(obs), 2.0 * np.clip(mu[0], -1, 1), rtol=1e-6)
    assert agent.act(obs).dtype == np.float32 and agent.act(obs).shape == (1,)


def test_inspect_names_the_continuous_actions(pendulum_run):
    result = invoke("inspect", pendulum_run)
    assert result.exit_code == 0, result.output
    assert "gaussian heads" in result.output and "continuous actions: a Box of 1 in [-2, 2]" in result.output
    health = invoke("inspect", pendulum_run, "--health")
    assert health.exit_code == 0 and "Gaussian policy: entropy" in health.output, health.output
    rows = (pendulum_run / "health.csv").read_text().splitlines()
    entropy = float(rows[-1].split(",")[rows[0].split(",").index("entropy")])
    assert np.isfinite(entropy), "health.csv gives a Gaussian policy's differential entropy"


def test_documented_numpy_reader_runs_a_gaussian_policy(pendulum_run):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    namespace = {"__name__": "numpy_policy"}
    exec(compile([b for b in blocks if "numpy_policy.py" in b][0], "numpy_policy.py", "exec"), namespace)
    path = pendulum_run / "latest.h5"
    layers, shape, scale = namespace["load_layers"](path)
    bounds = namespace["action_bounds"](path)
    ck = checkpoint.load(path)
    net = Network(ck.spec)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=shape).astype(np.float32) * 3
        action, details = namespace["act"](namespace["forward"](layers, shape, scale, x), bounds)
        mu, var, v = net.forward(ck.theta, x[None])
        np.testing.assert_allclose(details["mu"], mu[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(details["var"], var[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(action, 2.0 * np.clip(mu[0], -1, 1), rtol=1e-4, atol=1e-5)
    assert namespace["action_bounds"](find_checkpoint("CartPole-v1-a3c")) is None


def test_resume_continues_a_gaussian_run(pendulum_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pendulum_run, run)
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "3000", "--quiet"])
    assert result.exit_code == 0, result.output
    ck = checkpoint.load(run / "latest.h5")
    assert ck.global_step >= 3000 and ck.spec.heads == "gaussian"


@pytest.mark.parametrize("env", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_box_action_gymnasium_environments_train_through_the_python_path(env, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--env", env, "--gym", "--steps", "600", "--threads", "2",
                                      "--eval-episodes", "1", "--hidden", "8", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"environment: {env} (gym)" in result.output and "gaussian heads" in result.output


def test_eval_record_of_a_gaussian_policy(pendulum_run, tmp_path):
    pytest.importorskip("PIL", reason="--record needs the 'record' extra (pillow)")
    gif = tmp_path / "pendulum.gif"
    result = invoke("eval", pendulum_run, "-n", 1, "--max-steps", 20, "--record", gif)
    assert result.exit_code == 0, result.output
    assert gif.stat().st_size > 0


def test_throughput_benchmark_on_native_pendulum():
    result = CliRunner().invoke(cli, ["bench", "throughput", "--env", "Pendulum-v1", "--algos", "a3c", "--threads",
                                      "1", "--repeats", 1, "--warmup", 0.1, "--duration", 0.2, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["rows"][0]
    assert (row["env"], row["env_kind"], row["status"]) == ("Pendulum-v1", "native", "ok")
    assert row["steps_per_s"] > 0


@pytest.mark.parametrize("args", [["--algo", "nstep-q", "--separate-value"],
                                  ["--env", "Catch-v0", "--network", "conv", "--separate-value"]])
def test_separate_value_outside_a3c_with_an_mlp_is_refused(args, tmp_path):
    result = CliRunner().invoke(cli, ["train", *args, "--steps", "10", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--separate-value is for --algo a3c with --network mlp" in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_benchmarks_refuse_q_methods_on_box_actions():
    result = CliRunner().invoke(cli, ["bench", "throughput", "--env", "Pendulum-v1", "--algos", "a3c,sarsa"])
    assert result.exit_code == 2
    expected = "Pendulum-v1 has continuous (Box) actions; the Q methods (sarsa) need discrete ones: give --algos a3c"
    assert expected in result.output, result.output


def test_mujoco_without_the_rest_of_its_extra_names_what_is_missing(monkeypatch):
    """A bare `pip install mujoco` leaves out gymnasium's other MuJoCo needs (imageio): the error
    names the missing module, not MuJoCo."""
    import gymnasium

    def make(env_id, **kwargs):
        raise ModuleNotFoundError("No module named 'imageio'", name="imageio")

    monkeypatch.setattr(gymnasium, "make", make)
    result = CliRunner().invoke(cli, ["train", "--env", "HalfCheetah-v5", "--steps", "10"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: HalfCheetah-v5 needs imageio, part of the MuJoCo extra, which is not installed: "
                     "pip install 'numba_a3c[mujoco]'"]


def test_mujoco_environments_without_mujoco_name_the_extra():
    try:
        import mujoco  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("mujoco is installed: the message for its absence cannot be seen")
    result = CliRunner().invoke(cli, ["train", "--env", "HalfCheetah-v5", "--steps", "10"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: HalfCheetah-v5 needs MuJoCo, which is not installed: pip install 'numba_a3c[mujoco]'"]


def test_box2d_environments_without_box2d_name_the_extra(monkeypatch):
    """gymnasium's Box2D tasks raise DependencyNotInstalled without Box2D: the error names the extra."""
    import gymnasium
    from gymnasium.error import DependencyNotInstalled

    def make(env_id, **kwargs):
        raise DependencyNotInstalled('Box2D is not installed, you can install it by run `pip install swig` followed '
                                     'by `pip install "gymnasium[box2d]"`')

    monkeypatch.setattr(gymnasium, "make", make)
    result = CliRunner().invoke(cli, ["train", "--env", "LunarLander-v3", "--steps", "10"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: LunarLander-v3 needs Box2D, which is not installed: pip install " \
                                    "'numba_a3c[box2d]'"


def test_pendulum_preset_builds_a_gaussian_policy_with_its_own_value_tower():
    from numba_a3c.build import build_run

    config = resolve({"env": "Pendulum-v1"})
    assert (config.preset, config.algo, config.separate_value, config.beta) == ("Pendulum-v1", "a3c", True, 1e-3)
    net = build_run(config).network
    assert net.spec.heads == "gaussian" and net.spec.separate_value and net.spec.action_high == (2.0,)
