"""The LSTM kernels: the forward step against NumPy, and BPTT against central finite differences."""

import numba
import numpy as np
import pytest

from numba_a3c.nn.lstm import FORGET_BIAS, GATE_ORDER, lstm_backward, lstm_forward, lstm_init

H_FD = 1e-6


def np_step(x, W, U, b, h, c):
    """The documented step in plain NumPy (gate order i, f, g, o)."""
    Hn = h.shape[0]
    z = x @ W + h @ U + b
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    i, f, g, o = sig(z[:Hn]), sig(z[Hn:2 * Hn]), np.tanh(z[2 * Hn:3 * Hn]), sig(z[3 * Hn:])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def run_segment(X, W, U, b, h0, c0):
    """Forward through the segment with the kernel; returns (Hs, Cs, G, TC)."""
    T, H = X.shape[0], h0.shape[0]
    dt = X.dtype
    Hs, Cs = np.zeros((T + 1, H), dt), np.zeros((T + 1, H), dt)
    G, TC = np.zeros((T, 4 * H), dt), np.zeros((T, H), dt)
    Hs[0], Cs[0] = h0, c0
    for t in range(T):
        lstm_forward(X[t], W, U, b, Hs[t], Cs[t], G[t], Cs[t + 1], TC[t], Hs[t + 1])
    return Hs, Cs, G, TC


def problem(seed, T=5, n_in=3, H=4, dtype=np.float64):
    rng = np.random.default_rng(seed)
    W, U, b = lstm_init(rng, n_in, H, dtype)
    b += rng.normal(scale=0.3, size=b.shape).astype(dtype)
    X = rng.normal(size=(T, n_in)).astype(dtype)
    X[T // 2, 0] = 0.0                              # a zero input exercises the skip path
    h0 = rng.normal(scale=0.5, size=H).astype(dtype)
    c0 = rng.normal(scale=0.5, size=H).astype(dtype)
    A = rng.normal(size=(T, H)).astype(dtype)       # the loss L = Σ_t A_t · h_t
    return X, W, U, b, h0, c0, A


def test_forward_step_matches_numpy_and_documents_its_layout():
    X, W, U, b, h0, c0, _ = problem(0)
    Hs, Cs, _, TC = run_segment(X, W, U, b, h0, c0)
    h, c = h0, c0
    for t in range(X.shape[0]):
        h, c = np_step(X[t], W, U, b, h, c)
        np.testing.assert_allclose(Hs[t + 1], h, rtol=1e-12)
        np.testing.assert_allclose(Cs[t + 1], c, rtol=1e-12)
        np.testing.assert_allclose(TC[t], np.tanh(c), rtol=1e-12)
    assert GATE_ORDER == "ifgo"
    _, _, b0 = lstm_init(np.random.default_rng(0), 3, 4)
    np.testing.assert_array_equal(b0, np.r_[np.zeros(4), np.full(4, FORGET_BIAS), np.zeros(8)])
    # float32 in, float32 out (no silent promotion)
    X32, W32, U32, b32, h32, c32, _ = problem(0, dtype=np.float32)
    Hs32, *_ = run_segment(X32, W32, U32, b32, h32, c32)
    assert Hs32.dtype == np.float32
    np.testing.assert_allclose(Hs32, Hs, rtol=1e-4, atol=1e-5)


def loss(X, W, U, b, h0, c0, A):
    Hs, *_ = run_segment(X, W, U, b, h0, c0)
    return float(np.sum(A * Hs[1:]))


@pytest.mark.parametrize("seed, T, n_in, H", [(1, 5, 3, 4), (2, 1, 2, 3), (3, 20, 6, 5)])
def test_bptt_gradients_match_finite_differences(seed, T, n_in, H):
    X, W, U, b, h0, c0, A = problem(seed, T, n_in, H)
    Hs, Cs, G, TC = run_segment(X, W, U, b, h0, c0)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    dX = np.zeros_like(X)
    dh0, dc0 = np.zeros(H), np.zeros(H)
    lstm_backward(X, W, U, Hs, Cs, G, TC, A, dW, dU, db, dX, dh0, dc0, np.zeros((len(X), 4 * H)), True)
    inputs = dict(X=X, W=W, U=U, b=b, h0=h0, c0=c0)
    analytic = dict(X=dX, W=dW, U=dU, b=db, h0=dh0, c0=dc0)
    for name, arr in inputs.items():
        for idx in np.ndindex(arr.shape):
            keep = arr[idx]
            arr[idx] = keep + H_FD
            up = loss(**inputs, A=A)
            arr[idx] = keep - H_FD
            down = loss(**inputs, A=A)
            arr[idx] = keep
            numeric = (up - down) / (2 * H_FD)
            assert analytic[name][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-7), (name, idx)


def test_backward_accumulates_and_can_skip_dx():
    X, W, U, b, h0, c0, A = problem(4)
    Hs, Cs, G, TC = run_segment(X, W, U, b, h0, c0)
    H = h0.shape[0]

    def grads(need_dX, start=0.0):
        out = [np.full_like(W, start), np.full_like(U, start), np.full_like(b, start), np.full_like(X, start)]
        lstm_backward(X, W, U, Hs, Cs, G, TC, A, *out, np.zeros(H), np.zeros(H), np.zeros((len(X), 4 * H)), need_dX)
        return out

    once = grads(True)
    twice = grads(True, start=0.0)
    lstm_backward(X, W, U, Hs, Cs, G, TC, A, *twice, np.zeros(H), np.zeros(H), np.zeros((len(X), 4 * H)), True)
    for a, b2 in zip(once, twice):
        np.testing.assert_allclose(b2, 2 * a, rtol=1e-12)
    skipped = grads(False, start=7.0)
    np.testing.assert_array_equal(skipped[3], 7.0)     # dX untouched
    np.testing.assert_allclose(skipped[0], once[0] + 7.0, rtol=1e-12)


def test_backward_may_write_its_gate_gradients_over_the_gates():
    """dZ = G (what the network's backward pass does, to save scratch) gives the same gradients,
    and dZ holds ∂L/∂z_t, the gates' pre-activation gradients, whose sum over the steps is ∂L/∂b."""
    X, W, U, b, h0, c0, A = problem(5, T=6)
    Hs, Cs, G, TC = run_segment(X, W, U, b, h0, c0)
    H = h0.shape[0]
    results = []
    for in_place in (False, True):
        g = [np.zeros_like(W), np.zeros_like(U), np.zeros_like(b), np.zeros_like(X), np.zeros(H), np.zeros(H)]
        gates = G.copy()
        dZ = gates if in_place else np.zeros_like(G)
        lstm_backward(X, W, U, Hs, Cs, gates, TC, A, *g, dZ, True)
        results.append(g + [dZ])
    for separate, in_place in zip(*results):
        np.testing.assert_array_equal(in_place, separate)
    np.testing.assert_allclose(results[0][6].sum(axis=0), results[0][2], rtol=1e-12)   # db = Σ_t dz_t


def test_backward_ignores_what_its_scratch_held():
    """dh0, dc0 and dz are outputs/scratch: garbage in them (NaN from np.empty, as CI's fresh
    process gave) must not reach the gradients. The loop once initialised them as 0 · x, which is
    NaN for x = NaN."""
    X, W, U, b, h0, c0, A = problem(3)
    Hs, Cs, G, TC = run_segment(X, W, U, b, h0, c0)
    H = h0.shape[0]
    out = []
    for fill in (0.0, np.nan):
        g = [np.zeros_like(W), np.zeros_like(U), np.zeros_like(b), np.zeros_like(X)]
        dh0, dc0 = np.full(H, fill), np.full(H, fill)
        lstm_backward(X, W, U, Hs, Cs, G, TC, A, *g, dh0, dc0, np.full((len(X), 4 * H), fill), True)
        out.append(g + [dh0, dc0])
    for clean, dirty in zip(*out):
        np.testing.assert_array_equal(dirty, clean)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="checks compiled signatures")
def test_kernels_release_the_gil():
    for kernel in (lstm_forward, lstm_backward):
        assert kernel.targetoptions.get("nogil") is True
