"""Whole networks: the flat parameter layout, initialisation, the forward pass against an
independent NumPy network, and float64 finite differences of network + loss through
``forward_row`` / ``backward_rows`` (the passes the workers run).

A gradient failure names the tensor, e.g. "conv1/W". Large tensors are checked at a seeded random
sample of entries, small ones entirely. ``NUMBA_DISABLE_JIT=1`` works here too, but the Atari
network is then skipped (its pure-Python forward pass takes minutes).
"""

import numba
import numpy as np
import pytest

from numba_a3c.nn.layers import log_softmax_forward
from numba_a3c.nn.losses import a3c_loss, q_loss
from numba_a3c.nn.network import (
    T_OUT,
    LayerSpec,
    Network,
    NetworkSpec,
    atari_spec,
    backward_rows,
    backward_scratch_size,
    forward_row,
    mlp_spec,
    small_conv_spec,
)

H = 1e-6
MAX_ENTRIES = 12  # finite-difference entries checked per large tensor
SLOW_WITHOUT_JIT = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="too slow without the JIT")


# ----------------------------------------------------------------------------- an independent NumPy network
def numpy_forward(net, theta, x):
    """The network computed with NumPy from the documented conventions: dense ``x @ W + b`` with W
    (in, out); conv W (O, C, kh, kw) over (C, H, W) inputs, valid padding; flatten row-major."""
    v = net.views(theta)
    outputs = {}
    body_out = None
    h = x.reshape((x.shape[0],) + tuple(net.spec.input_shape))
    for layer in net.layers:
        W, b = v[layer["name"] + "/W"], v[layer["name"] + "/b"]
        inp = h if not layer.get("head") else body_out
        if layer["type"] == "conv":
            s, k = layer["stride"], layer["kernel"]
            O, Ho, Wo = layer["output_shape"]
            z = np.zeros((inp.shape[0], O, Ho, Wo))
            for p in range(Ho):
                for q in range(Wo):
                    patch = inp[:, :, p * s:p * s + k, q * s:q * s + k]
                    z[:, :, p, q] = np.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
        else:
            z = inp.reshape(inp.shape[0], -1) @ W + b
        act = layer["activation"]
        y = np.maximum(z, 0) if act == "relu" else np.tanh(z) if act == "tanh" else z
        if layer.get("head"):
            outputs[layer["name"]] = y
        else:
            h = body_out = y
    return outputs


def run_forward(net, theta, obs):
    """forward_row over every row; returns the workspace."""
    _, ws, _ = net.buffers(obs.shape[0], theta.dtype)
    for i in range(obs.shape[0]):
        forward_row(net.table, theta, obs, ws, i)
    return ws


NETWORKS = {
    "mlp-relu": (lambda: mlp_spec(3, 3, (7, 5), "relu"), 0),
    "mlp-tanh": (lambda: mlp_spec(4, 2, (6,), "tanh"), 1),
    "mlp-q": (lambda: mlp_spec(3, 4, (5, 5), "relu", heads="q"), 2),
    "small-conv": (lambda: small_conv_spec((2, 6, 5), 3, filters=3, hidden=6), 3),
    "small-conv-q": (lambda: small_conv_spec((1, 5, 5), 3, heads="q", filters=2, hidden=4), 4),
    # The Atari body (conv 16 8×8/4 → conv 32 4×4/2 → dense 256) on 36×36 frames, to stay fast.
    "atari-36": (lambda: NetworkSpec((4, 36, 36), 6, atari_spec(6).body, "actor_critic"), 5),
}


def obs_for(net, rng, rows):
    if len(net.spec.input_shape) == 3:
        return rng.random((rows, net.input_size))  # scaled pixels in [0, 1)
    return rng.standard_normal((rows, net.input_size))


# ----------------------------------------------------------------------------- layout
@pytest.mark.parametrize("spec, names", [
    (mlp_spec(4, 2, (64, 64)), ["fc1/W", "fc1/b", "fc2/W", "fc2/b", "pi/W", "pi/b", "v/W", "v/b"]),
    (mlp_spec(4, 2, (32,), heads="q"), ["fc1/W", "fc1/b", "q/W", "q/b"]),
    (atari_spec(6), ["conv1/W", "conv1/b", "conv2/W", "conv2/b", "fc1/W", "fc1/b", "pi/W", "pi/b", "v/W", "v/b"]),
    (small_conv_spec((1, 10, 5), 3), ["conv1/W", "conv1/b", "fc1/W", "fc1/b", "pi/W", "pi/b", "v/W", "v/b"]),
])
def test_layout_names_offsets_and_views(spec, names):
    net = Network(spec)
    assert [p.name for p in net.params] == names
    # Offsets tile [0, n_params) exactly: no gap, no overlap.
    offset = 0
    for p in net.params:
        assert p.offset == offset, f"{p.name} starts at {p.offset}, expected {offset}"
        offset += p.size
    assert offset == net.n_params
    flat = net.init_params(0)
    assert flat.dtype == np.float32 and flat.shape == (net.n_params,) and flat.flags.c_contiguous
    for p in net.params:
        v = net.view(flat, p.name)
        assert v.shape == p.shape
        assert np.shares_memory(v, flat), f"{p.name} is a copy, not a view"
        v[...] = 123.0  # writing through the view changes the flat array, at the documented offset
        assert np.all(flat[p.offset:p.offset + p.size] == 123.0), p.name
    assert np.all(flat == 123.0)
    with pytest.raises(KeyError, match="no parameter"):
        net.view(flat, "nope/W")


def test_atari_shapes_follow_the_conventions():
    net = Network(atari_spec(6))
    shapes = {p.name: p.shape for p in net.params}
    assert shapes["conv1/W"] == (16, 4, 8, 8)  # (out_channels, in_channels, kh, kw)
    assert shapes["conv2/W"] == (32, 16, 4, 4)
    assert shapes["fc1/W"] == (32 * 9 * 9, 256)  # dense W is (in, out)
    assert shapes["pi/W"] == (256, 6) and shapes["v/W"] == (256, 1)
    assert [layer["output_shape"] for layer in net.layers] == [(16, 20, 20), (32, 9, 9), (256,), (6,), (1,)]
    assert net.n_params == 677_943
    assert net.activation_size <= net.workspace_size


def test_init_is_documented_and_seeded():
    net = Network(atari_spec(6))
    a, b, c = net.init_params(3), net.init_params(3), net.init_params(4)
    np.testing.assert_array_equal(a, b)  # same seed, same parameters
    assert not np.array_equal(a, c)
    v = net.views(a)
    for p in net.params:
        x = v[p.name]
        if p.name.endswith("/b"):
            assert not x.any(), f"{p.name}: biases start at 0"
            continue
        fan_in = int(np.prod(p.shape[1:])) if len(p.shape) == 4 else p.shape[0]
        bound = 1 / np.sqrt(fan_in) * (0.01 if p.name == "pi/W" else 1.0)
        assert np.abs(x).max() <= bound * (1 + 1e-6), f"{p.name}: outside U(-{bound}, {bound})"
        if x.size >= 1000:  # U(−a, a) has standard deviation a/√3
            assert np.std(x) == pytest.approx(bound / np.sqrt(3), rel=0.1), p.name
    assert net.init_params(0, np.float64).dtype == np.float64


def test_orthogonal_init_keeps_the_activation_scale():
    net = Network(atari_spec(6))
    theta = net.init_params(3, scheme="orthogonal")
    np.testing.assert_array_equal(theta, net.init_params(3, scheme="orthogonal"))
    v = net.views(theta)
    gains = {"conv1": np.sqrt(2), "conv2": np.sqrt(2), "fc1": np.sqrt(2), "pi": 0.01, "v": 1.0}
    for name, gain in gains.items():
        w = v[f"{name}/W"]
        m = w.reshape(w.shape[0], -1).T if w.ndim == 4 else w  # (fan_in, fan_out)
        small = min(m.shape)
        gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T  # gain² · I on the smaller side
        np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-5 * max(gain**2, 1e-4) + 1e-6,
                                   err_msg=name)
        assert not v[f"{name}/b"].any()
    # The point of the scheme: a ReLU body keeps the scale of its input, where "uniform" shrinks it.
    frames = np.random.default_rng(0).uniform(0.0, 1.0, (8, net.input_size)).astype(np.float32)
    fc1 = [i for i, layer in enumerate(net.layers) if layer["name"] == "fc1"][0]

    def fc1_rms(params):
        obs, ws, _ = net.buffers(8)
        obs[:] = frames
        for i in range(8):
            forward_row(net.table, params, obs, ws, i)
        lo = int(net.table[fc1][T_OUT])
        return float(np.sqrt(np.mean(ws[:, lo:lo + 256] ** 2)))

    assert fc1_rms(theta) > 5 * fc1_rms(net.init_params(3))
    with pytest.raises(ValueError, match="init scheme"):
        net.init_params(0, scheme="xavier")


def test_layer_table_rejects_bad_specs():
    with pytest.raises(ValueError, match="does not fit"):
        Network(NetworkSpec((1, 4, 4), 2, (LayerSpec("conv", 2, "relu", 5, 1),)))
    with pytest.raises(ValueError, match="activation"):
        Network(mlp_spec(3, 2, (4,), "sigmoid"))
    with pytest.raises(ValueError, match="heads"):
        Network(mlp_spec(3, 2, (4,), heads="dueling"))


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "atari-36"] +
                         [pytest.param("atari-36", marks=SLOW_WITHOUT_JIT)])
def test_forward_matches_numpy_network(name):
    make, seed = NETWORKS[name]
    net = Network(make())
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed, np.float64)
    theta += rng.standard_normal(theta.shape) * 0.1  # non-zero biases, a non-uniform policy
    obs = obs_for(net, rng, 3)
    ws = run_forward(net, theta, obs)
    ref = numpy_forward(net, theta, obs)
    assert ws.dtype == np.float64
    for head, out in (("q", net.out_q), ("pi", net.out_pi), ("v", net.out_v)):
        if out >= 0:
            np.testing.assert_allclose(ws[:, out:out + ref[head].shape[1]], ref[head], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}: head {head}")
    # float32 (what training runs) agrees with the float64 network to float32 precision
    ws32 = run_forward(net, theta.astype(np.float32), obs.astype(np.float32))
    assert ws32.dtype == np.float32
    np.testing.assert_allclose(ws32[:, :net.activation_size], ws[:, :net.activation_size], rtol=1e-4, atol=1e-5)
    # and Network.forward (the Python convenience API) gives the same outputs
    outs = net.forward(theta, obs)
    if net.out_q >= 0:
        np.testing.assert_allclose(outs, ref["q"], rtol=1e-10)
    else:
        np.testing.assert_allclose(outs[0], ref["pi"], rtol=1e-10)
        np.testing.assert_allclose(outs[1], ref["v"][:, 0], rtol=1e-10)


# ----------------------------------------------------------------------------- network + loss gradients
def loss_setup(net, rng, n):
    A = net.spec.n_actions
    return {"actions": rng.integers(0, A, n + 1).astype(np.int64),
            "targets": rng.standard_normal(n + 1).astype(np.float32).astype(np.float64), "beta": 0.05}


def analytic_gradient(net, theta, obs, n, data):
    """What a worker does: forward each row (acting), the loss kernel, backward_rows."""
    ws = run_forward(net, theta, obs)
    delta = np.zeros_like(ws)
    grads = np.zeros_like(theta)
    A = net.spec.n_actions
    if net.out_q >= 0:
        q_loss(ws[:, net.out_q:net.out_q + A], data["actions"], data["targets"],
               delta[:, net.out_q:net.out_q + A], n)
    else:
        a3c_loss(ws[:, net.out_pi:net.out_pi + A], ws[:, net.out_v:net.out_v + 1], data["actions"],
                 data["targets"], data["beta"], 1.0, 1.0, delta[:, net.out_pi:net.out_pi + A],
                 delta[:, net.out_v:net.out_v + 1], np.zeros(A), n)
    # NaN scratch: backward_rows must not read what it did not write (a kernel doing 0·x would turn it into NaN).
    backward_rows(net.table, theta, grads, obs, ws, delta, n, np.full(backward_scratch_size(net.table, n), np.nan))
    return grads, ws


def objective(net, obs, n, data, advantage):
    """The loss as a function of θ, computed with forward_row and NumPy. In A3C the advantage of
    the policy term is a constant (``advantage``, taken at the unperturbed θ)."""
    A = net.spec.n_actions

    def f(theta):
        ws = run_forward(net, theta, obs)
        if net.out_q >= 0:
            q = ws[:n, net.out_q:net.out_q + A]
            return float(np.sum((data["targets"][:n] - q[np.arange(n), data["actions"][:n]]) ** 2))
        total = 0.0
        logp = np.zeros(A)
        for i in range(n):
            log_softmax_forward(ws[i, net.out_pi:net.out_pi + A], logp)
            entropy = -np.sum(np.exp(logp) * logp)
            total += -advantage[i] * logp[data["actions"][i]] - data["beta"] * entropy
            total += 0.5 * (data["targets"][i] - ws[i, net.out_v]) ** 2
        return total

    return f


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "atari-36"] +
                         [pytest.param("atari-36", marks=SLOW_WITHOUT_JIT)])
def test_network_and_loss_gradients(name):
    make, seed = NETWORKS[name]
    net = Network(make())
    rng = np.random.default_rng(100 + seed)
    theta = net.init_params(seed, np.float64)
    theta += rng.standard_normal(theta.shape) * 0.05
    n = 4
    obs = obs_for(net, rng, n + 2)  # more rows than the segment: backward must use the first n only
    data = loss_setup(net, rng, n)
    grads, ws = analytic_gradient(net, theta, obs, n, data)
    assert grads.dtype == np.float64
    advantage = data["targets"][:n] - ws[:n, net.out_v] if net.out_v >= 0 else None
    assert_gradient_matches(name, net, theta, grads, objective(net, obs, n, data, advantage), rng)


def assert_gradient_matches(name, net, theta, grads, f, rng):
    """Each tensor of ``grads`` against central differences of the loss ``f(θ)`` (large tensors
    at MAX_ENTRIES seeded random entries); a failure names the tensor and the entry."""
    for p in net.params:
        idx = np.arange(p.size) if p.size <= 2 * MAX_ENTRIES else rng.choice(p.size, MAX_ENTRIES, replace=False)
        num = np.zeros(idx.size)
        for j, k in enumerate(idx):
            t = theta.copy()
            t[p.offset + k] += H
            up = f(t)
            t[p.offset + k] -= 2 * H
            num[j] = (up - f(t)) / (2 * H)
        ana = grads[p.offset + idx]
        err = np.abs(ana - num)
        bad = err > 1e-7 + 1e-5 * np.abs(num)
        assert not bad.any(), (f"{name}: gradient of {p.name} is wrong at entry {idx[bad][0]}: "
                               f"backward {ana[bad][0]!r}, finite differences {num[bad][0]!r}")


def test_backward_rows_sums_over_rows_and_accumulates():
    # The gradient of a segment is the sum of its rows' gradients, and backward_rows adds to grads.
    net = Network(small_conv_spec((2, 5, 5), 3, filters=2, hidden=5))
    rng = np.random.default_rng(9)
    theta = net.init_params(9, np.float64) + rng.standard_normal(net.n_params) * 0.1
    obs = obs_for(net, rng, 3)
    ws = run_forward(net, theta, obs)
    head = rng.standard_normal((3, net.workspace_size - net.out_pi))

    def grad_of(rows):
        g = np.zeros_like(theta)
        for r0, r1 in rows:
            w, d = ws[r0:r1].copy(), np.zeros((r1 - r0, net.workspace_size))
            d[:, net.out_pi:net.out_pi + 4] = head[r0:r1, :4]
            backward_rows(net.table, theta, g, obs[r0:r1].copy(), w, d, r1 - r0, net.backward_scratch(3, np.float64))
        return g

    whole = grad_of([(0, 3)])
    np.testing.assert_allclose(grad_of([(0, 1), (1, 2), (2, 3)]), whole, rtol=1e-10, atol=1e-12)
    assert np.abs(whole).sum() > 0
