"""Every layer and loss kernel against central finite differences in float64, and its forward pass
against an independent NumPy computation.

The kernels are generic Numba functions, so feeding them float64 arrays compiles float64
versions; :func:`assert_float64` checks that a run really computed in float64 (a kernel that
silently rounded through float32 would miss a NumPy reference by ~1e-7, not ~1e-15).

For a kernel y = f(x; θ) and a random upstream gradient G = ∂L/∂y, the test loss is
L = Σ G ⊙ f(x; θ); the backward kernel's outputs must match the central differences
(L(x + h) − L(x − h)) / 2h of that L, entry by entry. A failure names the tensor ("dW", "dx", …).

Run them without compiling, for coverage or a readable traceback from inside a kernel::

    NUMBA_DISABLE_JIT=1 python -m pytest tests/test_layers.py tests/test_optim.py

(the whole-network checks of tests/test_network.py work that way too, but slowly).
"""

import numpy as np
import pytest

from numba_a3c.nn.layers import (
    add_dZWt,
    add_XtdZ,
    add_xW,
    col2im_add,
    conv2d_backward,
    conv2d_forward,
    dense_backward,
    dense_forward,
    im2col,
    log_softmax_backward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    softmax_backward,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from numba_a3c.nn.losses import LOG_2PI, VAR_MIN, a3c_loss, gaussian_a3c_loss, q_loss

H = 1e-6  # finite-difference step (float64)
SEEDS = [0, 1, 2, 3]


def numeric_grad(loss, x, h=H):
    """Central differences of the scalar ``loss()`` with respect to every entry of ``x`` (in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = loss()
        flat[i] = old - h
        down = loss()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def assert_grad(name, analytic, numeric, rtol=1e-5, atol=1e-7):
    """analytic ≈ numeric, or fail naming the tensor and its worst entry."""
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    assert analytic.shape == numeric.shape, f"{name}: shape {analytic.shape} != {numeric.shape}"
    err = np.abs(analytic - numeric)
    bad = err > atol + rtol * np.abs(numeric)
    if bad.any():
        i = np.unravel_index(np.argmax(err - rtol * np.abs(numeric)), err.shape)
        raise AssertionError(f"gradient of {name} is wrong at {i}: backward {analytic[i]!r}, "
                             f"finite differences {numeric[i]!r} ({bad.sum()} of {bad.size} entries off)")


def assert_float64(name, got, reference):
    """The kernel computed in float64: it matches a float64 NumPy reference to ~1e-12."""
    assert np.asarray(got).dtype == np.float64, f"{name}: dtype {np.asarray(got).dtype}, expected float64"
    np.testing.assert_allclose(got, reference, rtol=1e-11, atol=1e-12, err_msg=f"{name} is not float64-exact")


# ----------------------------------------------------------------------------- matrix products
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("zeros", [0.0, 0.5, 1.0])
def test_the_blocked_products_match_numpy(dtype, zeros):
    """add_xW, add_XtdZ and add_dZWt take rows four at a time and skip zero weights: every count
    of rows left over (n, B from 0 to 9), any pattern of zeros, widths that are not a multiple of
    the vector length; they accumulate into what their output held."""
    rng = np.random.default_rng(int(zeros * 10) + (dtype == np.float32))
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    for n in range(10):
        for B in range(1, 10, 2):
            m = int(rng.integers(1, 40))
            X = rng.standard_normal((B, n))
            X[rng.random(X.shape) < zeros] = 0.0
            W = rng.standard_normal((n, m))
            dZ = rng.standard_normal((B, m))
            z0, dW0, dX0 = rng.standard_normal(m), rng.standard_normal((n, m)), rng.standard_normal((B, n))
            z, dW, dX = (a.astype(dtype) for a in (z0, dW0, dX0))
            Xd, Wd, dZd = (a.astype(dtype) for a in (X, W, dZ))
            add_xW(Xd[0], Wd, z)
            add_XtdZ(Xd, dZd, dW)
            add_dZWt(dZd, Wd, dX)
            case = f"n={n} B={B} m={m}"
            np.testing.assert_allclose(z, z0 + X[0] @ W, rtol=rtol, atol=rtol * 10, err_msg=f"add_xW {case}")
            np.testing.assert_allclose(dW, dW0 + X.T @ dZ, rtol=rtol, atol=rtol * 10, err_msg=f"add_XtdZ {case}")
            np.testing.assert_allclose(dX, dX0 + dZ @ W.T, rtol=rtol, atol=rtol * 10, err_msg=f"add_dZWt {case}")


# ----------------------------------------------------------------------------- dense
@pytest.mark.parametrize("seed", SEEDS)
def test_dense_gradients(seed):
    rng = np.random.default_rng(seed)
    B, n_in, n_out = rng.integers(1, 6), rng.integers(1, 9), rng.integers(1, 9)
    X = rng.standard_normal((B, n_in))
    X[rng.random(X.shape) < 0.3] = 0.0  # ReLU-like zeros take the kernel's skip path
    W = rng.standard_normal((n_in, n_out))
    b = rng.standard_normal(n_out)
    G = rng.standard_normal((B, n_out))

    def forward():
        Z = np.zeros((B, n_out))
        for i in range(B):
            dense_forward(X[i], W, b, Z[i])
        return Z

    assert_float64("dense_forward", forward(), X @ W + b)

    def loss():
        return float(np.sum(G * forward()))

    dW, db, dX = np.zeros_like(W), np.zeros_like(b), np.zeros_like(X)
    dense_backward(X, W, G, dW, db, dX, True)
    assert_float64("dense_backward dW", dW, X.T @ G)
    assert_grad("dense W", dW, numeric_grad(loss, W))
    assert_grad("dense b", db, numeric_grad(loss, b))
    assert_grad("dense X", dX, numeric_grad(loss, X))

    # Backward accumulates (a segment sums its rows; two heads add into one input) ...
    dense_backward(X, W, G, dW, db, dX, True)
    np.testing.assert_allclose(dW, 2 * (X.T @ G), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dX, 2 * (G @ W.T), rtol=1e-12, atol=1e-12)
    # ... and need_dX=False leaves dX alone.
    before = dX.copy()
    dense_backward(X, W, G, dW, db, dX, False)
    np.testing.assert_array_equal(dX, before)


# ----------------------------------------------------------------------------- conv2d
def conv_reference(x, Wt, b, stride):
    """Valid cross-correlation by direct sliding windows: x (C, H, W), Wt (O, C, kh, kw)."""
    O, _, kh, kw = Wt.shape
    _, Hh, Ww = x.shape
    Ho, Wo = (Hh - kh) // stride + 1, (Ww - kw) // stride + 1
    z = np.zeros((O, Ho, Wo))
    for p in range(Ho):
        for q in range(Wo):
            patch = x[:, p * stride:p * stride + kh, q * stride:q * stride + kw]
            z[:, p, q] = np.tensordot(Wt, patch, axes=3) + b
    return z


def random_conv(rng):
    C, O = rng.integers(1, 4), rng.integers(1, 4)
    kh = kw = int(rng.integers(1, 5))
    stride = int(rng.integers(1, 4))
    Hh = int(rng.integers(kh, kh + 7))
    Ww = int(rng.integers(kw, kw + 7))
    return C, O, kh, kw, stride, Hh, Ww


@pytest.mark.parametrize("seed", SEEDS + [4, 5])
def test_conv2d_gradients(seed):
    rng = np.random.default_rng(seed)
    C, O, kh, kw, stride, Hh, Ww = random_conv(rng)
    Ho, Wo = (Hh - kh) // stride + 1, (Ww - kw) // stride + 1
    K, P = C * kh * kw, Ho * Wo
    x = rng.standard_normal(C * Hh * Ww)
    Wt = rng.standard_normal((O, C, kh, kw))
    b = rng.standard_normal(O)
    G = rng.standard_normal(O * P)
    cols = np.zeros((K, P))

    def forward():
        z = np.zeros(O * P)
        conv2d_forward(x, C, Hh, Ww, Wt.reshape(O, K), b, kh, kw, stride, cols, z)
        return z

    assert_float64("conv2d_forward", forward(), conv_reference(x.reshape(C, Hh, Ww), Wt, b, stride).ravel())

    def loss():
        return float(np.sum(G * forward()))

    forward()  # leaves the patch matrix in cols, as the acting pass does
    dW, db, dx = np.zeros((O, K)), np.zeros(O), np.zeros_like(x)
    gWt, dcols = np.full((K, O), np.nan), np.full((K, P), np.nan)    # scratch: written before it is read
    conv2d_backward(cols, C, Hh, Ww, Wt.reshape(O, K), kh, kw, stride, G, dW, db, gWt, dcols, dx, True)
    assert_grad("conv W", dW.reshape(Wt.shape), numeric_grad(loss, Wt))
    assert_grad("conv b", db, numeric_grad(loss, b))
    assert_grad("conv x", dx, numeric_grad(loss, x))

    # need_dx=False (a first layer) computes the parameter gradients only.
    forward()  # the finite differences left cols from a perturbed x
    dW2, db2, dx2 = np.zeros((O, K)), np.zeros(O), np.zeros_like(x)
    conv2d_backward(cols, C, Hh, Ww, Wt.reshape(O, K), kh, kw, stride, G, dW2, db2, gWt, dcols, dx2, False)
    np.testing.assert_allclose(dW2, dW, rtol=1e-12, atol=1e-14)
    assert not dx2.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_im2col_and_col2im_are_adjoint(seed):
    # <im2col(x), Y> = <x, col2im(Y)> for all x, Y: col2im is exactly the backward of im2col.
    rng = np.random.default_rng(seed)
    C, _, kh, kw, stride, Hh, Ww = random_conv(rng)
    Ho, Wo = (Hh - kh) // stride + 1, (Ww - kw) // stride + 1
    x = rng.standard_normal(C * Hh * Ww)
    Y = rng.standard_normal((C * kh * kw, Ho * Wo))
    cols = np.zeros_like(Y)
    im2col(x, C, Hh, Ww, kh, kw, stride, cols)
    back = np.zeros_like(x)
    col2im_add(Y, C, Hh, Ww, kh, kw, stride, back)
    assert np.sum(cols * Y) == pytest.approx(np.sum(x * back), rel=1e-12)
    # and im2col reads the documented entry: cols[(c·kh + u)·kw + v, p·Wo + q] = x[c, p·s + u, q·s + v]
    c, u, v, p, q = C - 1, kh - 1, kw - 1, Ho - 1, Wo - 1
    assert cols[(c * kh + u) * kw + v, p * Wo + q] == x.reshape(C, Hh, Ww)[c, p * stride + u, q * stride + v]


@pytest.mark.parametrize("C, H, k, stride", [(2, 84, 8, 4), (3, 20, 4, 2), (2, 21, 4, 2), (1, 85, 8, 4),
                                               (1, 83, 7, 4), (2, 22, 6, 2), (2, 80, 8, 4), (2, 18, 4, 2)])
def test_im2col_copies_compiled_for_the_atari_shapes_agree_with_numpy(C, H, k, stride):
    """The Atari network's two convolutions (stride 4 to 20×20, stride 2 to 9×9) run copies of
    im2col and col2im_add compiled with those sizes as constants. They (also for other inputs and
    kernels that give the same output: 85×85, 83×83 with 7×7, 21×21, 22×22 with 6×6) and the
    general code (80×80, 18×18) give numpy's patches and their exact adjoint."""
    rng = np.random.default_rng(H)
    Ho = (H - k) // stride + 1
    x = rng.standard_normal(C * H * H)
    img = x.reshape(C, H, H)
    expected = np.array([[img[c, p * stride + u, q * stride + v] for p in range(Ho) for q in range(Ho)]
                         for c in range(C) for u in range(k) for v in range(k)])
    cols = np.zeros((C * k * k, Ho * Ho))
    im2col(x, C, H, H, k, k, stride, cols)
    np.testing.assert_array_equal(cols, expected)
    Y = rng.standard_normal(cols.shape)
    back = np.zeros_like(x)
    col2im_add(Y, C, H, H, k, k, stride, back)
    folded = np.zeros_like(img)
    for c in range(C):
        for u in range(k):
            for v in range(k):
                folded[c, u:u + stride * Ho:stride, v:v + stride * Ho:stride] += \
                    Y[(c * k + u) * k + v].reshape(Ho, Ho)
    np.testing.assert_allclose(back, folded.ravel(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- activations
def away_from_zero(rng, n):
    """Pre-activations kept away from ReLU's kink, where finite differences are not a derivative."""
    z = rng.standard_normal(n)
    return np.where(np.abs(z) < 1e-2, 0.5, z)


@pytest.mark.parametrize("name, forward_kernel, backward_kernel, reference",
                         [("relu", relu_forward, relu_backward, lambda z: np.maximum(z, 0.0)),
                          ("tanh", tanh_forward, tanh_backward, np.tanh)])
@pytest.mark.parametrize("seed", SEEDS)
def test_activation_gradients(name, forward_kernel, backward_kernel, reference, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20))
    z = away_from_zero(rng, n)
    G = rng.standard_normal(n)

    def forward():
        y = z.copy()
        forward_kernel(y)
        return y

    assert_float64(f"{name}_forward", forward(), reference(z))
    dz = G.copy()
    backward_kernel(forward(), dz)  # in place: ∂L/∂Y → ∂L/∂Z, from the stored output Y
    assert_grad(f"{name} input", dz, numeric_grad(lambda: float(np.sum(G * forward())), z))


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_and_log_softmax_gradients(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    z = rng.standard_normal(n) * 3
    G = rng.standard_normal(n)

    def softmax():
        p = np.zeros(n)
        softmax_forward(z, p)
        return p

    def log_softmax():
        lp = np.zeros(n)
        log_softmax_forward(z, lp)
        return lp

    e = np.exp(z - z.max())
    assert_float64("softmax_forward", softmax(), e / e.sum())
    assert_float64("log_softmax_forward", log_softmax(), z - z.max() - np.log(e.sum()))

    dz = np.zeros(n)
    softmax_backward(softmax(), G, dz)
    assert_grad("softmax input", dz, numeric_grad(lambda: float(G @ softmax()), z))
    dz = np.zeros(n)
    log_softmax_backward(log_softmax(), G, dz)
    assert_grad("log_softmax input", dz, numeric_grad(lambda: float(G @ log_softmax()), z))
    # Both accumulate into dz.
    log_softmax_backward(log_softmax(), G, dz)
    dz1 = np.zeros(n)
    log_softmax_backward(log_softmax(), G, dz1)
    np.testing.assert_allclose(dz, 2 * dz1, rtol=1e-12, atol=1e-15)


def test_log_softmax_is_stable_for_large_logits():
    z = np.array([1000.0, 0.0, -1000.0])
    lp = np.zeros(3)
    log_softmax_forward(z, lp)
    assert np.all(np.isfinite(lp))
    assert lp[0] == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("seed", SEEDS)
def test_q_loss_gradient(seed):
    rng = np.random.default_rng(seed)
    n, A = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    q = rng.standard_normal((n + 1, A))  # one spare row: the kernel only reads the first n
    actions = rng.integers(0, A, n + 1).astype(np.int64)
    # float32-representable targets: the kernel reads targets as float32 (they come from float32 buffers)
    targets = rng.standard_normal(n + 1).astype(np.float32).astype(np.float64)
    dq = np.full((n + 1, A), 7.0)

    def loss():
        return q_loss(q, actions, targets, np.zeros((n + 1, A)), n)

    expected = sum((targets[i] - q[i, actions[i]]) ** 2 for i in range(n))
    assert loss() == pytest.approx(expected, rel=1e-12)
    q_loss(q, actions, targets, dq, n)
    num = numeric_grad(loss, q)
    assert_grad("q_loss Q", dq[:n], num[:n])
    assert np.all(dq[n] == 7.0), "q_loss wrote past row n"


def a3c_reference(logits, values, actions, returns, beta, n):
    """The A3C loss terms in NumPy: (−Σ A log π(a|s), ½ Σ A², Σ H)."""
    z = logits[:n]
    lp = z - z.max(1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
    adv = returns[:n] - values[:n, 0]
    H = -(np.exp(lp) * lp).sum(1)
    return -np.sum(adv * lp[np.arange(n), actions[:n]]), 0.5 * np.sum(adv ** 2), np.sum(H)


@pytest.mark.parametrize("beta", [0.0, 0.01, 0.5])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k_pi, c_v", [(1.0, 1.0), (3.7, 0.25)])
def test_a3c_loss_gradients(seed, beta, k_pi, c_v):
    """L = k_π·policy − β·entropy + c_v·value: its terms against the NumPy reference, its gradients
    against central differences, with the paper's weights (1, 1) and with others."""
    rng = np.random.default_rng(seed)
    n, A = int(rng.integers(1, 6)), int(rng.integers(2, 6))
    logits = rng.standard_normal((n, A))
    values = rng.standard_normal((n, 1))
    actions = rng.integers(0, A, n).astype(np.int64)
    returns = rng.standard_normal(n).astype(np.float32).astype(np.float64)
    logp = np.zeros(A)

    def terms():
        return a3c_loss(logits, values, actions, returns, beta, k_pi, c_v, np.zeros((n, A)), np.zeros((n, 1)), logp, n)

    np.testing.assert_allclose(terms(), a3c_reference(logits, values, actions, returns, beta, n), rtol=1e-11)

    dlogits, dvalues = np.zeros((n, A)), np.zeros((n, 1))
    a3c_loss(logits, values, actions, returns, beta, k_pi, c_v, dlogits, dvalues, logp, n)
    # Policy and entropy terms: the advantage R − V is a constant there (no gradient flows
    # from the policy term into V), so differentiate them with the values held fixed.
    adv = returns - values[:, 0]

    def policy_objective():
        lp = logits - logits.max(1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
        H = -(np.exp(lp) * lp).sum(1)
        return float(-k_pi * np.sum(adv * lp[np.arange(n), actions]) - beta * np.sum(H))

    assert_grad("a3c_loss logits (policy + entropy)", dlogits, numeric_grad(policy_objective, logits))
    # The kernel's own terms give the same: k_π·policy_loss − β·entropy, differenced through the kernel.
    assert_grad("a3c_loss logits (through the kernel)", dlogits,
                numeric_grad(lambda: float(k_pi * terms()[0] - beta * terms()[2]), logits))
    # Value term: c_v·½ (R − V)², differentiated in V.
    assert_grad("a3c_loss values", dvalues, numeric_grad(lambda: float(c_v * terms()[1]), values))


def test_a3c_entropy_term_alone():
    # With R = V the advantage is 0: the gradient is β times the entropy's, pushing towards uniform.
    rng = np.random.default_rng(7)
    n, A, beta = 3, 4, 0.3
    logits = rng.standard_normal((n, A))
    values = rng.standard_normal((n, 1)).astype(np.float32).astype(np.float64)  # the kernel reads R as float32
    returns = values[:, 0].copy()
    dlogits, dvalues = np.zeros((n, A)), np.zeros((n, 1))
    pl, vl, _ = a3c_loss(logits, values, np.zeros(n, np.int64), returns, beta, 1.0, 1.0, dlogits, dvalues,
                           np.zeros(A), n)
    assert pl == 0.0 and vl == 0.0 and not dvalues.any()

    def minus_beta_entropy():
        return float(-beta * a3c_loss(logits, values, np.zeros(n, np.int64), returns, beta, 1.0, 1.0,
                                      np.zeros((n, A)), np.zeros((n, 1)), np.zeros(A), n)[2])

    assert_grad("a3c_loss logits (entropy)", dlogits, numeric_grad(minus_beta_entropy, logits))


@pytest.mark.parametrize("seed, beta, k_pi, c_v", [(0, 0.0, 1.0, 1.0), (1, 1e-4, 1.0, 1.0), (2, 0.5, 1.0, 1.0),
                                                   (3, 0.01, 2.5, 0.3)])
def test_gaussian_a3c_loss_gradients(seed, beta, k_pi, c_v):
    """The continuous-action A3C loss: values against the written formula (Gaussian log-density
    and entropy per dimension, σ² = softplus(s) + VAR_MIN), gradients against finite differences."""
    rng = np.random.default_rng(seed)
    n, D = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    mu = rng.standard_normal((n, D))
    s = rng.standard_normal((n, D)) * 2.0
    s[0, 0] = 30.0                    # softplus's large-input branch
    values = rng.standard_normal((n, 1))
    actions = mu + rng.standard_normal((n, D)) * 1.5
    returns = rng.standard_normal(n).astype(np.float32).astype(np.float64)  # the kernel reads R as float32
    adv = returns - values[:, 0]

    def terms():
        return gaussian_a3c_loss(mu, s, values, actions, returns, beta, k_pi, c_v, np.zeros((n, D)), np.zeros((n, D)),
                                 np.zeros((n, 1)), n)

    var = np.log1p(np.exp(s)) + float(VAR_MIN)
    log_2pi = float(LOG_2PI)   # log 2π as the float32 constant the kernel uses
    assert log_2pi == pytest.approx(np.log(2 * np.pi), rel=1e-7)
    logp = -0.5 * ((actions - mu) ** 2 / var + np.log(var) + log_2pi)
    H = 0.5 * (np.log(var) + log_2pi + 1)
    expected = (-np.sum(adv[:, None] * logp), 0.5 * np.sum(adv ** 2), np.sum(H))
    np.testing.assert_allclose(terms(), expected, rtol=1e-10)
    # H of N(μ, σ²) is −E[log N]: the sample mean of −log N over many draws approaches it
    draws = rng.standard_normal(200_000) * np.sqrt(var[0, 0]) + mu[0, 0]
    sample_h = np.mean(0.5 * ((draws - mu[0, 0]) ** 2 / var[0, 0] + np.log(2 * np.pi * var[0, 0])))
    assert sample_h == pytest.approx(H[0, 0], abs=5e-3)

    dmu, ds, dvalues = np.zeros((n, D)), np.zeros((n, D)), np.zeros((n, 1))
    gaussian_a3c_loss(mu, s, values, actions, returns, beta, k_pi, c_v, dmu, ds, dvalues, n)
    # The advantage is a constant in the policy and entropy terms (values held fixed there).
    policy = lambda: float(k_pi * terms()[0] - beta * terms()[2])  # noqa: E731
    assert_grad("gaussian_a3c_loss mu", dmu, numeric_grad(policy, mu))
    assert_grad("gaussian_a3c_loss s (variance)", ds, numeric_grad(policy, s))
    assert_grad("gaussian_a3c_loss values", dvalues, numeric_grad(lambda: float(c_v * terms()[1]), values))
