"""Recurrent networks: the LSTM layer inside the layer table, against an independent NumPy network,
and float64 central finite differences of the whole network + A3C loss over a segment.

A segment starts from a carried (non-zero) state (h₀, c₀), as every A3C segment after an episode's
first does; truncated BPTT treats that state as a constant, so the finite differences perturb θ
with (h₀, c₀) held fixed. A failure names the tensor, e.g. "lstm1/U".
"""

import numpy as np
import pytest
from test_network import assert_gradient_matches

from numba_a3c.nn.layers import log_softmax_forward
from numba_a3c.nn.losses import a3c_loss
from numba_a3c.nn.lstm import FORGET_BIAS, GATE_ORDER
from numba_a3c.nn.network import (
    LayerSpec,
    Network,
    NetworkSpec,
    atari_lstm_spec,
    backward_rows,
    backward_scratch_size,
    carry_state,
    forward_row,
    keep_state,
    lstm_spec,
    reset_state,
)

SPECS = {
    # obs → dense tanh 5 → LSTM 4 → heads: the LSTM's input gradient flows into a dense layer
    "dense-lstm": lambda: lstm_spec(3, 3, (5, 4), "tanh"),
    # obs → LSTM 3 → heads: the LSTM reads the observation (no input gradient)
    "lstm-only": lambda: lstm_spec(2, 2, (3,)),
    # obs → relu 4 → LSTM 3 → relu 4 → heads: a layer after the LSTM
    "lstm-in-the-middle": lambda: NetworkSpec((3,), 2, (LayerSpec("dense", 4, "relu"), LayerSpec("lstm", 3, "linear"),
                                                        LayerSpec("dense", 4, "relu"))),
    # frames → conv 3 4×4/2 → relu 4 → LSTM 3 → heads: the atari-lstm chain in miniature, the LSTM's
    # input gradient reaching the convolution through the dense layer
    "conv-dense-lstm": lambda: NetworkSpec((2, 8, 8), 3, (LayerSpec("conv", 3, "relu", 4, 2), LayerSpec("dense", 4),
                                                          LayerSpec("lstm", 3, "linear"))),
}


# ----------------------------------------------------------------------------- an independent NumPy network
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_segment(net, theta, x, state):
    """The heads' outputs for consecutive steps x (T, n_in) from ``state`` (every LSTM's (h, c)),
    computed with NumPy from the documented conventions (dense x @ W + b; conv W (O, C, kh, kw), valid
    padding, flattened row-major; LSTM gate order i, f, g, o)."""
    v = net.views(theta)
    carried = {}
    k = 0
    for layer in net.layers:
        if layer["type"] == "lstm":
            H = layer["cells"]
            carried[layer["name"]] = (state[k:k + H].astype(np.float64), state[k + H:k + 2 * H].astype(np.float64))
            k += 2 * H
    outs = {"pi": [], "v": []}
    for t in range(x.shape[0]):
        h = body = x[t].astype(np.float64)
        for layer in net.layers:
            name = layer["name"]
            inp = body if layer.get("head") else h
            if layer["type"] == "lstm":
                hp, cp = carried[name]
                z = inp @ v[name + "/W"] + hp @ v[name + "/U"] + v[name + "/b"]
                H = hp.shape[0]
                i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
                c = f * cp + i * g
                y = o * np.tanh(c)
                carried[name] = (y, c)
            elif layer["type"] == "conv":      # W (O, C, kh, kw) over (C, H, W), valid padding
                s, k = layer["stride"], layer["kernel"]
                O, Ho, Wo = layer["output_shape"]
                frame = inp.reshape(net.spec.input_shape)
                W = v[name + "/W"]
                y = np.array([[[np.sum(frame[:, p * s:p * s + k, q * s:q * s + k] * W[o]) for q in range(Wo)]
                               for p in range(Ho)] for o in range(O)]) + v[name + "/b"][:, None, None]
                y = np.maximum(y, 0).ravel() if layer["activation"] == "relu" else y.ravel()
            else:
                y = inp @ v[name + "/W"] + v[name + "/b"]
                act = layer["activation"]
                y = np.maximum(y, 0) if act == "relu" else np.tanh(y) if act == "tanh" else y
            if layer.get("head"):
                outs[name].append(y)
            else:
                h = body = y
    return np.array(outs["pi"]), np.array(outs["v"])[:, 0], carried


def run_segment(net, theta, obs, state, n):
    """What a worker does: row 0 keeps the segment's initial state; forward_row on rows 0..n−1."""
    _, ws, _ = net.buffers(obs.shape[0], theta.dtype)
    net.set_state(ws[0], state)
    for i in range(n):
        forward_row(net.table, theta, obs, ws, i)
    return ws


def problem(name, seed, n=5, dtype=np.float64):
    net = Network(SPECS[name]())
    rng = np.random.default_rng(seed)
    theta = net.init_params(seed, dtype)
    theta += (rng.standard_normal(theta.shape) * 0.1).astype(dtype)
    obs = rng.standard_normal((n + 1, net.input_size)).astype(dtype)
    state = rng.normal(scale=0.5, size=net.state_size).astype(dtype)
    return net, theta, obs, state


# ----------------------------------------------------------------------------- layout and init
def test_lstm_layout_init_and_state_areas():
    net = Network(lstm_spec(2, 2, (8, 6)))
    assert [p.name for p in net.params] == ["fc1/W", "fc1/b", "lstm1/W", "lstm1/U", "lstm1/b",
                                            "pi/W", "pi/b", "v/W", "v/b"]
    shapes = {p.name: p.shape for p in net.params}
    assert shapes["lstm1/W"] == (8, 24) and shapes["lstm1/U"] == (6, 24) and shapes["lstm1/b"] == (24,)
    assert shapes["pi/W"] == (6, 2)
    lstm = [layer for layer in net.layers if layer["type"] == "lstm"][0]
    assert lstm["cells"] == 6 and lstm["gate_order"] == GATE_ORDER == "ifgo"
    assert net.recurrent and net.state_size == 12 and len(net.state_areas) == 1
    assert not Network(NetworkSpec((2,), 2, (LayerSpec("dense", 3),))).recurrent
    for scheme in ("uniform", "orthogonal"):
        theta = net.init_params(1, scheme=scheme)
        b = net.view(theta, "lstm1/b")
        np.testing.assert_array_equal(b, np.r_[np.zeros(6), np.full(6, FORGET_BIAS), np.zeros(12)])
        assert np.abs(net.view(theta, "lstm1/U")).max() > 0
    u = net.view(net.init_params(1), "lstm1/U")
    assert np.abs(u).max() <= 1 / np.sqrt(6) + 1e-7        # U(±1/√fan_in), fan_in = H
    atari = Network(atari_lstm_spec(6))
    assert [layer["name"] for layer in atari.layers] == ["conv1", "conv2", "fc1", "lstm1", "pi", "v"]
    assert atari.view(atari.init_params(0), "lstm1/U").shape == (256, 1024)
    with pytest.raises(ValueError, match="lstm layer takes no activation"):
        Network(NetworkSpec((2,), 2, (LayerSpec("lstm", 3, "relu"),)))


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_over_a_segment_matches_numpy(name):
    net, theta, obs, state = problem(name, 1)
    n = obs.shape[0]
    ws = run_segment(net, theta, obs, state, n)
    pi, v, carried = numpy_segment(net, theta, obs, state)
    A = net.spec.n_actions
    np.testing.assert_allclose(ws[:, net.out_pi:net.out_pi + A], pi, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ws[:, net.out_v], v, rtol=1e-10, atol=1e-12)
    # the state after the last step, handed to the next segment (as end_segment does: row n → row 0)
    after = np.zeros_like(ws[:1])
    keep_state(net.table, ws, n - 1)
    after[0] = ws[n - 1]
    expected = np.concatenate([np.r_[h, c] for h, c in carried.values()])
    np.testing.assert_allclose(net.get_state(after[0]), expected, rtol=1e-10, atol=1e-12)
    # float32 (what training runs) agrees to float32 precision
    ws32 = run_segment(net, theta.astype(np.float32), obs.astype(np.float32), state.astype(np.float32), n)
    assert ws32.dtype == np.float32
    np.testing.assert_allclose(ws32[:, net.out_pi:net.out_pi + A], pi, rtol=1e-4, atol=1e-5)


def test_state_is_carried_reset_and_kept_one_row_at_a_time():
    net, theta, obs, state = problem("dense-lstm", 2, n=6)
    ws = run_segment(net, theta, obs, state, 6)
    # Acting one observation at a time in a one-row workspace (evaluation) gives the same outputs.
    _, one, _ = net.buffers(1, theta.dtype)
    net.set_state(one[0], state)
    for t in range(6):
        forward_row(net.table, theta, obs[t:t + 1], one, 0)
        np.testing.assert_array_equal(one[0, :net.out_v + 1], ws[t, :net.out_v + 1])
        keep_state(net.table, one, 0)
    # A segment of 3 rows, its last state carried to row 0, then the next 3: the same as 6 at once.
    _, seg, _ = net.buffers(4, theta.dtype)
    net.set_state(seg[0], state)
    for i in range(3):
        forward_row(net.table, theta, obs, seg, i)
    carry_state(net.table, seg, 3, 0)
    for i in range(3):
        forward_row(net.table, theta, obs[3:], seg, i)
        np.testing.assert_array_equal(seg[i, net.out_pi:net.out_v + 1], ws[3 + i, net.out_pi:net.out_v + 1])
    reset_state(net.table, seg, 0)
    assert not net.get_state(seg[0]).any()
    # A feed-forward network has no state: the helpers leave its workspace alone.
    ff = Network(NetworkSpec((2,), 2, (LayerSpec("dense", 3),)))
    _, w, _ = ff.buffers(2)
    w[:] = 7.0
    carry_state(ff.table, w, 1, 0)
    reset_state(ff.table, w, 0)
    keep_state(ff.table, w, 0)
    assert np.all(w == 7.0) and ff.get_state(w[0]).size == 0


# ----------------------------------------------------------------------------- network + loss gradients
@pytest.mark.parametrize("name", sorted(SPECS))
def test_recurrent_segment_gradient_matches_finite_differences(name):
    """∂/∂θ of the A3C loss of a whole segment (policy − β·entropy + value), through the heads,
    the LSTM's BPTT and the layers before it, against central differences of the NumPy network."""
    n = 5
    net, theta, obs, state = problem(name, 10, n=n)
    rng = np.random.default_rng(11)
    A = net.spec.n_actions
    actions = rng.integers(0, A, n + 1).astype(np.int64)
    targets = rng.standard_normal(n + 1)
    beta = 0.05
    ws = run_segment(net, theta, obs, state, n)
    delta = np.zeros_like(ws)
    grads = np.zeros_like(theta)
    a3c_loss(ws[:, net.out_pi:net.out_pi + A], ws[:, net.out_v:net.out_v + 1], actions, targets, beta, 1.0, 1.0,
             delta[:, net.out_pi:net.out_pi + A], delta[:, net.out_v:net.out_v + 1], np.zeros(A), n)
    backward_rows(net.table, theta, grads, obs, ws, delta, n, np.full(backward_scratch_size(net.table, n), np.nan))
    advantage = targets[:n] - ws[:n, net.out_v]     # a constant in the policy term, as in A3C

    def loss(t):
        pi, v, _ = numpy_segment(net, t, obs[:n], state)
        total = 0.0
        logp = np.zeros(A)
        for i in range(n):
            log_softmax_forward(pi[i], logp)
            total += -advantage[i] * logp[actions[i]] + beta * np.sum(np.exp(logp) * logp)
            total += 0.5 * (targets[i] - v[i]) ** 2
        return total

    assert_gradient_matches(name, net, theta, grads, loss, rng)
    for p in net.params:
        assert np.abs(grads[p.offset:p.offset + p.size]).max() > 0, f"{name}: {p.name} gets no gradient"
