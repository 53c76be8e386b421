"""Network health (`asyncrl inspect --health`): dead units, entropy, value error, gradient scales."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from numba_a3c.cli.main import cli
from numba_a3c.diagnostics import append_health, bootstrap_bias, discounted_returns, health, verdicts
from numba_a3c.nn.network import Network, lstm_spec, mlp_spec


def test_discounted_returns_by_hand():
    r = np.array([1.0, 0.0, 2.0, 1.0, 0.0])
    ends = np.array([False, False, True, False, False])  # an episode ends after step 2
    G = discounted_returns(r, ends, gamma=0.5, tail=4.0)
    # after the end: 0 + .5·4 = 2; 1 + .5·2 = 2. Before it: 2; 0 + .5·2 = 1; 1 + .5·1 = 1.5
    np.testing.assert_allclose(G, [1.5, 1.0, 2.0, 2.0, 2.0])


def frames(n=64, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, dim)).astype(np.float32)
    actions = rng.integers(0, 2, n)
    rewards = np.ones(n)
    ends = np.zeros(n, bool)
    ends[20] = ends[45] = True
    return obs, actions, rewards, ends


def test_a_dead_layer_and_a_uniform_policy_are_reported():
    net = Network(mlp_spec(4, 2, hidden=(16,)))
    theta = net.init_params(0)
    v = net.views(theta)
    v["fc1/b"][:8] = -100.0   # half the units can never be active on these inputs
    v["pi/W"][:] = 0.0        # π = uniform everywhere
    report = health(net, theta, *frames())
    (fc1,) = report["layers"]
    assert fc1["dead_fraction"] == 0.5
    assert 0 < fc1["active_fraction"] < 0.5
    assert report["heads"]["entropy"] == pytest.approx(np.log(2))
    grads = {t["name"]: t["grad_norm"] for t in report["tensors"]}
    assert grads["pi/W"] > 0 and grads["v/W"] > 0
    v["fc1/b"][:] = -100.0    # every unit dead: no gradient reaches the body
    report = health(net, theta, *frames())
    assert report["layers"][0]["dead_fraction"] == 1.0
    assert {t["name"]: t["grad_norm"] for t in report["tensors"]}["fc1/W"] == 0.0
    said = " ".join(verdicts(report))
    assert "dead" in said and "uniform" in said


def test_a_nearly_silent_layer_and_a_constant_estimate_are_reported():
    """What a dead Atari body looks like (n-step Q on Pong at 5M steps: conv2 0.1 % active, value
    -0.686 ± 0.006 against returns that vary): most units dead but not all, and an estimate that
    does not depend on the input."""
    net = Network(mlp_spec(4, 2, hidden=(128,)))
    theta = net.init_params(0)
    obs, actions, rewards, ends = frames()
    rewards = np.where(np.arange(len(rewards)) % 7 == 0, -1.0, 0.0)     # returns that vary
    said = " ".join(verdicts(health(net, theta, obs, actions, rewards, ends)))
    assert "barely passes" not in said and "hardly depends" not in said
    v = net.views(theta)
    v["fc1/b"][1:] = -100.0    # one unit of 128 alive, positive on some frames: under 1 % of the outputs
    report = health(net, theta, obs, actions, rewards, ends)
    (fc1,) = report["layers"]
    assert 0 < fc1["active_fraction"] < 0.01 and fc1["dead_fraction"] == 127 / 128
    said = " ".join(verdicts(report))
    assert "fc1: only" in said and "barely passes its input on" in said and "hardly depends" not in said
    v["v/W"][:] = 0.0          # V(s) = its bias on every state
    said = " ".join(verdicts(health(net, theta, obs, actions, rewards, ends)))
    assert "the value estimate hardly depends on the state (std 0 against" in said


def test_value_error_against_the_observed_returns():
    net = Network(mlp_spec(4, 2, hidden=(8,)))
    theta = net.init_params(1)
    obs, actions, rewards, ends = frames()
    report = health(net, theta, obs, actions, rewards, ends, gamma=0.9)
    ws = net.forward(theta, obs)[1]
    G = discounted_returns(rewards, ends, 0.9, ws[-1])
    h = report["heads"]
    assert h["value_rmse"] == pytest.approx(np.sqrt(np.mean((G - ws) ** 2)), rel=1e-5)
    assert h["explained_variance"] == pytest.approx(1 - np.var(G - ws) / np.var(G), rel=1e-5)
    # a Q network reports max_a Q(s, a) as its estimate
    qnet = Network(mlp_spec(4, 2, hidden=(8,), heads="q"))
    q_theta = qnet.init_params(1)
    q = qnet.forward(q_theta, obs)
    report = health(qnet, q_theta, obs, actions, rewards, ends, gamma=0.9)
    assert report["heads"]["value_mean"] == pytest.approx(q.max(axis=1).mean(), rel=1e-5)
    assert "entropy" not in report["heads"]


def test_sarsa_bootstrap_bias_by_hand():
    q = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])          # θ prefers action 0, then action 1
    # θ's advantage of its choice: 1 − 1/3 and 2 − 2/3, mean 1. θ⁻ at the same actions: 0 − 1/3 and 2 − 2/3, mean 1/2
    q_target = np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    out = bootstrap_bias(q, q_target, gamma=0.99)
    assert out["bootstrap_bias"] == pytest.approx(0.5)
    assert out["bootstrap_shift"] == pytest.approx(-0.99 * 0.5 / 0.01)
    assert bootstrap_bias(q, q + 3.0, gamma=0.9)["bootstrap_bias"] == pytest.approx(0.0)   # a level is no bias
    assert bootstrap_bias(q, q, gamma=1.0)["bootstrap_shift"] is None


def test_a_sarsa_health_report_carries_the_bootstrap_bias():
    qnet = Network(mlp_spec(4, 3, hidden=(8,), heads="q"))
    theta = qnet.init_params(1)
    obs, actions, rewards, ends = frames()
    rewards = np.where(np.arange(len(rewards)) % 7 == 0, -1.0, 0.0)
    assert "bootstrap_bias" not in health(qnet, theta, obs, actions, rewards, ends)["heads"]
    report = health(qnet, theta, obs, actions, rewards, ends, target_params=theta)
    assert report["heads"]["bootstrap_bias"] == pytest.approx(0.0, abs=1e-7)
    assert "bootstrap" not in " ".join(verdicts(report))
    # a target network that disagrees with θ about its favourite action: it reads θ's choice lower
    target = theta.copy()
    q = qnet.forward(theta, obs)
    favourite = np.bincount(q.argmax(axis=1), minlength=3).argmax()
    qnet.views(target)["q/b"][favourite] -= 5.0
    h = health(qnet, theta, obs, actions, rewards, ends, gamma=0.99, target_params=target)["heads"]
    assert h["bootstrap_bias"] > 0 and h["bootstrap_shift"] < -10
    said = " ".join(verdicts(health(qnet, theta, obs, actions, rewards, ends, gamma=0.99, target_params=target)))
    assert "Sarsa's bootstrap pulls the values down by about" in said


@pytest.mark.parametrize("name", ["CartPole-v1-a3c", "Catch-v0-a3c", "CartPole-v1-nstep-q", "Pong-v5-a3c"])
def test_inspect_health_of_the_shipped_checkpoints(name):
    result = CliRunner().invoke(cli, ["inspect", name, "--health", "--health-steps", "60", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["frames"] == 60 and report["layers"] and report["tensors"]
    assert all(np.isfinite(t["grad_norm"]) for t in report["tensors"])
    # shared RMSProp: the step scale 1/√(g + ε) lies between 0 and 1/√ε; a shipped copy without the
    # optimizer statistics (the Atari agent) has none to report
    scales = [t.get("rms_step_scale") for t in report["tensors"]]
    if name == "Pong-v5-a3c":
        assert scales == [None] * len(scales)
    else:
        assert all(0 < s <= 1 / np.sqrt(report_eps(name)) + 1e-6 for s in scales)
    text = CliRunner().invoke(cli, ["inspect", name, "--health", "--health-steps", "60"])
    assert text.exit_code == 0 and "explained variance" in text.output and "‖∂L/∂w‖" in text.output


@pytest.mark.parametrize("algo", ["sarsa", "onestep-q"])
def test_inspect_health_reads_sarsas_target_network(tmp_path, algo):
    from numba_a3c.config import resolve
    from numba_a3c.trainer import Trainer

    config = resolve({"env": "CartPole-v1", "algo": algo, "steps": 3000, "threads": 1, "target_interval": 1000,
                      "eval_every": 1500, "eval_episodes": 1})
    assert Trainer(config, run_dir=tmp_path / "run").run().status == "finished"
    with open(tmp_path / "run" / "health.csv") as fh:     # the run's log has it too, at each evaluation
        rows = list(csv.DictReader(fh))
    assert rows and all(("bootstrap_bias" in r) == (algo == "sarsa") for r in rows)
    if algo == "sarsa":
        assert all(np.isfinite(float(r["bootstrap_bias"])) for r in rows)
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "run"), "--health", "--health-steps", "60", "--json"])
    assert result.exit_code == 0, result.output
    heads = json.loads(result.output)["heads"]
    assert ("bootstrap_bias" in heads) == (algo == "sarsa")
    text = CliRunner().invoke(cli, ["inspect", str(tmp_path / "run"), "--health", "--health-steps", "60"]).output
    assert ("Sarsa's bootstrap bias" in text) == (algo == "sarsa")


def test_health_csv_keeps_the_columns_of_its_header(tmp_path):
    path = tmp_path / "health.csv"
    append_health(path, 100, 1.5, {"entropy": 0.5, "value_mean": -1.0})
    append_health(path, 200, 3.0, {"entropy": 0.25, "bootstrap_bias": 0.01})    # one column more, one less
    with open(path) as fh:
        assert fh.read().splitlines() == ["global_step,wall_time,entropy,value_mean", "100,1.500,0.5,-1",
                                          "200,3.000,0.25,"]


def report_eps(name):
    from numba_a3c import checkpoint
    from numba_a3c.inspection import find_checkpoint

    return checkpoint.load(find_checkpoint(name)).config.rms_eps


def test_each_evaluation_logs_the_network_health(tmp_path):
    """A run directory's health.csv gets one row per evaluation: dead units, activation scale,
    entropy and value error, so a run's logs show whether its network is alive."""

    from numba_a3c.config import resolve
    from numba_a3c.trainer import Trainer

    config = resolve({"env": "Catch-v0", "steps": 6000, "threads": 1, "eval_every": 2000, "eval_episodes": 2})
    assert Trainer(config, run_dir=tmp_path / "run").run().status == "finished"
    with open(tmp_path / "run" / "health.csv") as fh:
        rows = list(csv.DictReader(fh))
    with open(tmp_path / "run" / "evaluations.csv") as fh:
        evaluations = list(csv.DictReader(fh))
    # ≥ 1: a periodic evaluation that is still running (compiling, with a cold kernel cache) when the
    # next one is due makes the monitor skip that one, so only the final one is certain
    assert len(rows) == len(evaluations) >= 1
    assert [int(r["global_step"]) for r in rows] == [int(r["global_step"]) for r in evaluations]
    for r in rows:
        assert 0 <= float(r["conv1_dead"]) <= 1 and 0 <= float(r["fc1_active"]) <= 1
        assert 0 <= float(r["entropy"]) <= np.log(3) + 1e-6
        assert float(r["value_rmse"]) >= 0 and float(r["conv1_rms"]) > 0


def test_a_dying_network_is_reported_beside_its_evaluation(tmp_path):
    """Each periodic evaluation carries the alarms of its health row (dead or nearly silent layers),
    not the readings that a network that has not learned yet also gives (this one, freshly
    initialised, has a nearly constant value estimate)."""
    from numba_a3c.config import resolve
    from numba_a3c.trainer import Trainer

    config = resolve({"env": "CartPole-v1", "algo": "a3c", "activation": "relu", "hidden": [16], "threads": 1,
                      "steps": 1000, "eval_episodes": 1})
    trainer = Trainer(config, run_dir=tmp_path / "run")
    (tmp_path / "run").mkdir(exist_ok=True)
    theta = trainer.network.init_params(0)
    assert trainer.evals.evaluate_now(theta, 0, 0.0, report=False).health_alarms == ()
    trainer.network.views(theta)["fc1/b"][:] = -100.0
    alarms = trainer.evals.evaluate_now(theta, 1, 0.0, report=False).health_alarms
    assert any(a.startswith("fc1: 100% of its units are never active") for a in alarms), alarms
    assert not any("uniform" in a or "hardly depends" in a for a in alarms)


def test_train_prints_the_health_alarms_after_the_evaluation_line():
    from numba_a3c.cli.train import evaluation_lines
    from numba_a3c.evaluations import Evaluation

    ev = Evaluation(2_000_000, 10.0, np.array([-21.0, -20.0]), health_alarms=("conv2: only 0.1% …",))
    assert list(evaluation_lines(ev, "runs/pong")) == [
        "evaluation at step 2,000,000: mean return -20.50 over 2 episodes (min -21.0, max -20.0)",
        "  health: conv2: only 0.1% … (asyncrl inspect runs/pong --health)"]
    assert len(list(evaluation_lines(Evaluation(1, 1.0, np.array([1.0])), "r"))) == 1


def test_a_saturated_lstm_is_reported():
    """What A3C-LSTM on Pong looked like at 1M agent steps: fc1's outputs grown to an RMS of 8,
    84 % of the cell candidates at |g| > 0.96 and |c| up to 372, so that almost no gradient
    reached the body. At initialisation nothing is saturated; with the LSTM's input weights
    scaled up, nearly everything is, and the alarm says so."""
    net = Network(lstm_spec(4, 2, hidden=(16, 8), activation="tanh"))
    theta = net.init_params(0)
    obs, actions, rewards, ends = frames()
    (lstm,) = [layer for layer in health(net, theta, obs, actions, rewards, ends)["layers"] if layer["name"] == "lstm1"]
    assert lstm["saturated_fraction"] < 0.1 and lstm["cell_saturated_fraction"] < 0.1
    assert "saturated" not in " ".join(verdicts(health(net, theta, obs, actions, rewards, ends), alarms_only=True))
    net.views(theta)["lstm1/W"][:] *= 1000.0
    report = health(net, theta, obs, actions, rewards, ends)
    (lstm,) = [layer for layer in report["layers"] if layer["name"] == "lstm1"]
    assert lstm["saturated_fraction"] > 0.9 and lstm["cell_saturated_fraction"] > 0.05 and lstm["cell_abs_max"] > 1.0
    (alarm,) = [v for v in verdicts(report, alarms_only=True) if v.startswith("lstm1")]
    assert "gate values are saturated" in alarm
