"""A3C's Gaussian policy for Box actions: the head's layout, float64 finite differences of the
whole network + Gaussian loss, the sampler and the action scaling, and the kernels a worker runs."""

import numpy as np
import pytest

from numba_a3c.algorithms.policies import action_bounds_array, sample_gaussian, scale_action
from numba_a3c.algorithms.state import CF_SIZE
from numba_a3c.nn.losses import VAR_MIN, gaussian_a3c_loss
from numba_a3c.nn.network import Network, NetworkSpec, backward_rows, forward_row, mlp_spec
from numba_a3c.rng import new_rng

H = 1e-6


def gaussian_spec(obs_dim=3, D=2, hidden=(6, 5), activation="tanh"):
    spec = mlp_spec(obs_dim, D, hidden, activation)
    return NetworkSpec(spec.input_shape, D, spec.body, "gaussian", action_low=(-2.0,) * D, action_high=(2.0,) * D)


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


def test_whole_network_and_gaussian_loss_gradients():
    """forward_row → gaussian_a3c_loss → backward_rows in float64 against central differences of
    the loss written independently with NumPy (log N(a; μ, σ²), entropy ½ log(2πeσ²), ½(R − V)²),
    the advantage held constant in the policy term as A3C does."""
    net = Network(gaussian_spec(obs_dim=3, D=2, hidden=(6, 5), activation="tanh"))
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
                      beta, delta[:, mu_o:mu_o + D], delta[:, sg_o:sg_o + D], delta[:, v_o:v_o + 1], n)
    backward_rows(net.table, theta, grads, obs, ws, delta, n)
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
