"""Layer kernels: each forward sits right above its backward.

Conventions (checkpoints and external readers rely on them):

* Forward kernels compute ONE sample (acting sees one observation at a time): 1-D vectors, or
  (channels, height, width) images flattened row-major. Backward kernels of dense layers take a
  batch, a C-contiguous 2-D array with one row per sample (the segment's rows, copied out of the
  workspace by :func:`numba_a3c.nn.network.backward_rows`); conv and activation backward
  kernels take one sample.
* Dense: ``W`` has shape (n_in, n_out) and the layer computes ``Z = X @ W + b``.
* Conv2d: ``W`` has shape (out_channels, in_channels, kh, kw), inputs are laid out
  (channels, height, width) and flattened row-major, padding is "valid", and
  ``Ho = (H - kh) // stride + 1`` (same for the width).
* Backward kernels *accumulate* parameter gradients (``dW += …``, ``db += …``) so a segment's
  gradient can be summed over its rows, and *accumulate* the input gradient ``dX`` too, so a
  tensor read by two layers (the policy and value heads read the same body output) receives
  the sum of both contributions. Callers zero the gradient buffers first.

Names follow the derivation: ``dLdY`` is ∂L/∂(layer output), ``dZ`` the gradient at the
pre-activation, ``dW``/``db``/``dX`` the gradients of the parameters and of the input.

Every kernel is ``@njit(nogil=True, cache=True)`` and float32-clean (constants are
``np.float32``), so worker threads run them in parallel with the GIL released. They are generic:
float64 arrays give float64 kernels, which is how the finite-difference tests run them.
"""

import glob
import os

import numpy as np

from numba_a3c.jit import njit
from numba_a3c.nn.activations import tanh

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


def limit_blas_threads(n=1):
    """Make the OpenBLAS that nopython ``np.dot`` calls (SciPy's) use ``n`` threads; True if done.

    Every kernel here runs inside one worker thread, and the products are small (a 5-step
    segment's convolutions), so BLAS's own threads only fight the workers for the cores: with its
    default (one thread per core) the Atari segment took 2.3× longer on a 2-core machine, alone.
    Called once when this module is imported, unless ``OPENBLAS_NUM_THREADS`` is set (then the
    user's choice stands).
    """
    import ctypes

    try:
        import scipy
        import scipy.linalg.cython_blas  # loads the OpenBLAS that numba binds np.dot to
    except ImportError:
        return False
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line and line.rstrip().endswith(".so")}
        # NumPy's own OpenBLAS (numpy.libs) serves NumPy's Python-level products: leave it alone.
        paths = {p for p in paths if "numpy.libs" not in p}
    except OSError:
        pass
    if not paths:
        paths = set(glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs", "*openblas*")))
    done = False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                       "openblas_set_num_threads"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                fn.argtypes = [ctypes.c_int]
                fn(int(n))
                done = True
                break
    return done


if not os.environ.get("OPENBLAS_NUM_THREADS"):
    limit_blas_threads(1)


# --------------------------------------------------------------------------- matrix products
# The three products of the dense and LSTM layers, written as loops that read each row of the big
# operand once and keep four rows in flight: a plain loop (``z[j] += x_k W[k, j]`` row after row)
# loads and stores z for every row of W, two loads and a store per multiply-add, which is what
# bounded it; four rows at a time load and store z once per four rows (the benchmark's 5-step
# segments took 0.62× (MLP) to 0.87× (Atari) the time; docs/kernels.md). The 2-D arrays are
# indexed directly (W[k, j]) rather than through row views (W[k]) inside the loops: every view
# costs numba a reference-count update, which for the MLP's 64-wide layers took more time than the
# arithmetic. Rows whose weight is 0 (a ReLU that is off) are skipped: the four rows taken together
# are four rows with nonzero weights.
@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def add_xW(x, W, z):
    """z += x W, i.e. z[j] += Σ_k x_k W[k, j]: x (n,), W (n, m), z (m,)."""
    n = x.shape[0]
    m = z.shape[0]
    k0 = k1 = k2 = 0
    found = 0
    for k in range(n):
        if x[k] != _ZERO:
            if found == 0:
                k0 = k
            elif found == 1:
                k1 = k
            elif found == 2:
                k2 = k
            else:
                x0, x1, x2, x3 = x[k0], x[k1], x[k2], x[k]
                for j in range(m):
                    z[j] += x0 * W[k0, j] + x1 * W[k1, j] + x2 * W[k2, j] + x3 * W[k, j]
                found = -1
            found += 1
    for r in range(found):          # the 0–3 rows left over
        k = k0 if r == 0 else (k1 if r == 1 else k2)
        xk = x[k]
        for j in range(m):
            z[j] += xk * W[k, j]


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def add_XtdZ(X, dZ, dW):
    """dW += Xᵀ dZ = Σ_i x_iᵀ dz_i: X (B, n), dZ (B, m), dW (n, m). Row k of dW gains
    Σ_i X[i, k] dZ[i], which is :func:`add_xW` with column k of X as the weights (two views per
    row of dW, none inside the loops)."""
    for k in range(X.shape[1]):
        add_xW(X[:, k], dZ, dW[k])


# reassoc lets the dot products vectorise (a float sum is otherwise kept in order); inlined, it
# compiles with its caller's flags, so its callers carry the same fastmath flags.
@njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"}, inline="always")
def add_dZWt(dZ, W, dX):
    """dX += dZ Wᵀ, i.e. dX[i, k] += Σ_j dZ[i, j] W[k, j]: dZ (B, m), W (n, m), dX (B, n). Four
    rows of W at a time, each read once for all B rows of dZ (the Atari network's 2.65 MB fc
    weights are read once per segment)."""
    B, m = dZ.shape
    n = W.shape[0]
    k = 0
    while k + 4 <= n:
        for i in range(B):
            s0 = _ZERO * dX[i, k]       # 0·dX: a float32 zero of dX's type
            s1 = s0
            s2 = s0
            s3 = s0
            for j in range(m):
                d = dZ[i, j]
                s0 += d * W[k, j]
                s1 += d * W[k + 1, j]
                s2 += d * W[k + 2, j]
                s3 += d * W[k + 3, j]
            dX[i, k] += s0
            dX[i, k + 1] += s1
            dX[i, k + 2] += s2
            dX[i, k + 3] += s3
        k += 4
    while k < n:
        for i in range(B):
            s = _ZERO * dX[i, k]
            for j in range(m):
                s += dZ[i, j] * W[k, j]
            dX[i, k] += s
        k += 1


# --------------------------------------------------------------------------- dense
@njit(nogil=True, cache=True, error_model="numpy")
def dense_forward(x, W, b, z):
    """z = x @ W + b for ONE sample (acting computes one observation at a time).

    Shapes: x (n_in,), W (n_in, n_out), b (n_out,), z (n_out,) written in place; all contiguous.
    Rows of W are added with weight x_k (:func:`add_xW`), so the inner loop runs along a row of W
    and z (it vectorises), and a zero input (a ReLU that is off) skips its row of W entirely.
    """
    for j in range(z.shape[0]):
        z[j] = b[j]
    add_xW(x, W, z)


# reassoc lets the dot products of dX = dZ Wᵀ vectorise (add_dZWt is inlined: the flags that count
# are the caller's).
@njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
def dense_backward(X, W, dZ, dW, db, dX, need_dX):
    """Gradients of Z = X @ W + b over a batch, given dZ = ∂L/∂Z:

        dW += Xᵀ dZ          db += Σ_rows dZ          dX += dZ Wᵀ   (only if need_dX)

    Shapes: X (B, n_in), W (n_in, n_out), dZ (B, n_out), dW (n_in, n_out), db (n_out,),
    dX (B, n_in); all C-contiguous. Each row of W is read once for the whole batch, each row of
    dW once per four rows of the batch (for the Atari network's 2592→256 layer that is 2.65 MB of
    weights, the cost that matters).
    """
    B = X.shape[0]
    n_out = W.shape[1]
    for i in range(B):
        for j in range(n_out):
            db[j] += dZ[i, j]
    add_XtdZ(X, dZ, dW)
    if need_dX:
        add_dZWt(dZ, W, dX)


# --------------------------------------------------------------------------- conv2d
# The patch copies below run short loops (a row of Wo output positions, 20 and 9 in the paper's
# Atari network) whose length and stride are only known at run time: compiled that way, LLVM keeps
# them as generic scalar loops. The output sizes and strides of the paper's two convolutions
# (stride 4 giving 20×20, stride 2 giving 9×9) therefore get copies compiled with those three
# numbers as constants, whose row loops LLVM unrolls and vectorises: on a 2-core Zen 3 EPYC,
# conv1's im2col took 53–67 µs instead of 105–127, conv2's 9–16 instead of 25–43, and conv2's
# col2im_add 15–17 instead of 39–44 (3 alternations each). The results are the same numbers
# (the same copies and sums, in the same order).
@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _im2col(x, C, H, Wd, kh, kw, stride, Ho, Wo, cols):
    for c in range(C):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for p in range(Ho):
                    src = (c * H + p * stride + u) * Wd + v
                    dst = p * Wo
                    for q in range(Wo):
                        cols[r, dst + q] = x[src + q * stride]


@njit(nogil=True, cache=True, error_model="numpy")
def im2col(x, C, H, Wd, kh, kw, stride, cols):
    """Unfold one input image into patch columns.

    x is the flat (C, H, W) image; cols (C·kh·kw, Ho·Wo) gets
    ``cols[(c·kh + u)·kw + v, p·Wo + q] = x[c, p·stride + u, q·stride + v]``.
    The convolution is then one matrix product: ``Z = W.reshape(O, C·kh·kw) @ cols``.
    """
    Ho = (H - kh) // stride + 1
    Wo = (Wd - kw) // stride + 1
    if stride == 4 and Ho == 20 and Wo == 20:       # the Atari conv1 (8×8 on 84×84)
        _im2col(x, C, H, Wd, kh, kw, 4, 20, 20, cols)
    elif stride == 2 and Ho == 9 and Wo == 9:       # the Atari conv2 (4×4 on 20×20)
        _im2col(x, C, H, Wd, kh, kw, 2, 9, 9, cols)
    else:
        _im2col(x, C, H, Wd, kh, kw, stride, Ho, Wo, cols)


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _col2im_add(dcols, C, H, Wd, kh, kw, stride, Ho, Wo, dx):
    for c in range(C):
        for u in range(kh):
            for v in range(kw):
                r = (c * kh + u) * kw + v
                for p in range(Ho):
                    dst = (c * H + p * stride + u) * Wd + v
                    src = p * Wo
                    for q in range(Wo):
                        dx[dst + q * stride] += dcols[r, src + q]


@njit(nogil=True, cache=True, error_model="numpy")
def col2im_add(dcols, C, H, Wd, kh, kw, stride, dx):
    """The adjoint of :func:`im2col`: scatter-add patch-column gradients back onto the image.

    dx (flat C·H·W) += fold(dcols). Overlapping patches sum, which is exactly the chain rule
    for an input pixel that several output positions read. (The Atari conv1 reads the
    observation and never needs it; its conv2 gets a copy with constant sizes, as im2col does.)
    """
    Ho = (H - kh) // stride + 1
    Wo = (Wd - kw) // stride + 1
    if stride == 2 and Ho == 9 and Wo == 9:          # the Atari conv2
        _col2im_add(dcols, C, H, Wd, kh, kw, 2, 9, 9, dx)
    else:
        _col2im_add(dcols, C, H, Wd, kh, kw, stride, Ho, Wo, dx)


@njit(nogil=True, cache=True, error_model="numpy")
def conv2d_forward(x, C, H, Wd, Wm, b, kh, kw, stride, cols, z):
    """Valid 2-D convolution of one image, by im2col and one matrix product.

        cols = im2col(x)                     (C·kh·kw, Ho·Wo)
        Z    = Wm @ cols + b[:, None]        (O, Ho·Wo), stored flat as (O, Ho, Wo)

    Wm is the weight viewed as (O, C·kh·kw). ``cols`` is kept by the caller: the backward pass
    reuses it instead of unfolding the image again. The product goes to BLAS sgemm.
    """
    im2col(x, C, H, Wd, kh, kw, stride, cols)
    O = Wm.shape[0]
    P = cols.shape[1]
    Z2 = z.reshape((O, P))
    np.dot(Wm, cols, Z2)
    for o in range(O):
        bo = b[o]
        for p in range(P):
            Z2[o, p] += bo


@njit(nogil=True, cache=True, error_model="numpy")
def conv2d_backward(cols, C, H, Wd, Wm, kh, kw, stride, dz, dWm, db, gWt, dcols, dx, need_dx):
    """Gradients of one image's convolution, given dZ = ∂L/∂Z (flat (O, Ho, Wo)).

        dWm += dZ @ colsᵀ          db += Σ_positions dZ
        dcols = Wmᵀ @ dZ ;  dx += col2im(dcols)       (only if need_dx)

    ``gWt`` (C·kh·kw, O) and ``dcols`` (the shape of ``cols``) are scratch, written by BLAS before
    they are read (nothing accumulates in them). The first layer of a network never needs dx,
    which skips its most expensive product.
    """
    O = Wm.shape[0]
    P = cols.shape[1]
    dZ2 = dz.reshape((O, P))
    K = cols.shape[0]
    # (dZ colsᵀ)ᵀ = cols dZᵀ: the same product, in the orientation OpenBLAS runs faster for these
    # shapes (for the Atari conv1, (256×400)·(400×16) took 33 µs where (16×400)·(400×256) took 55).
    np.dot(cols, dZ2.T, gWt)
    for o in range(O):
        s = _ZERO
        for p in range(P):
            s += dZ2[o, p]
        db[o] += s
    for k in range(K):
        for o in range(O):
            dWm[o, k] += gWt[k, o]
    if need_dx:
        np.dot(Wm.T, dZ2, dcols)
        col2im_add(dcols, C, H, Wd, kh, kw, stride, dx)


# --------------------------------------------------------------------------- activations
@njit(nogil=True, cache=True, error_model="numpy")
def relu_forward(Z):
    """Y = max(Z, 0), in place (a layer stores only its post-activation output)."""
    for i in range(Z.shape[0]):
        if Z[i] < _ZERO:
            Z[i] = _ZERO


@njit(nogil=True, cache=True, error_model="numpy")
def relu_backward(Y, dY):
    """dZ = dY · [Y > 0], in place in dY (Y is the stored post-activation)."""
    for i in range(Y.shape[0]):
        if Y[i] <= _ZERO:
            dY[i] = _ZERO


@njit(nogil=True, cache=True, error_model="numpy")
def tanh_forward(Z):
    """Y = tanh(Z), in place (:func:`numba_a3c.nn.activations.tanh`: exact in float64, a rational
    function accurate to 4e-7 in float32, which vectorises)."""
    for i in range(Z.shape[0]):
        Z[i] = tanh(Z[i])


@njit(nogil=True, cache=True, error_model="numpy")
def tanh_backward(Y, dY):
    """dZ = dY · (1 − Y²), in place in dY (tanh′ written with the stored output Y)."""
    for i in range(Y.shape[0]):
        dY[i] *= _ONE - Y[i] * Y[i]


# Flatten: the (C, H, W) activation is already stored row-major and flat, so flattening is the
# identity on memory; its backward is the identity too. A conv layer followed by a dense layer
# simply reads the conv output as a vector of C·H·W numbers.


# --------------------------------------------------------------------------- softmax
@njit(nogil=True, cache=True, error_model="numpy")
def log_softmax_forward(z, logp):
    """log π = z − logsumexp(z), computed with the max subtracted for stability."""
    n = z.shape[0]
    m = z[0]
    for k in range(1, n):
        if z[k] > m:
            m = z[k]
    s = _ZERO
    for k in range(n):
        s += np.exp(z[k] - m)
    lse = m + np.log(s)
    for k in range(n):
        logp[k] = z[k] - lse


@njit(nogil=True, cache=True, error_model="numpy")
def log_softmax_backward(logp, dlogp, dz):
    """dz += dlogp − softmax(z) · Σ_k dlogp_k   (the Jacobian of log-softmax applied to dlogp)."""
    n = logp.shape[0]
    s = _ZERO
    for k in range(n):
        s += dlogp[k]
    for k in range(n):
        dz[k] += dlogp[k] - np.exp(logp[k]) * s


@njit(nogil=True, cache=True, error_model="numpy")
def softmax_forward(z, p):
    """π = exp(z − max z) / Σ exp(z − max z)."""
    n = z.shape[0]
    m = z[0]
    for k in range(1, n):
        if z[k] > m:
            m = z[k]
    s = _ZERO
    for k in range(n):
        e = np.exp(z[k] - m)
        p[k] = e
        s += e
    inv = _ONE / s
    for k in range(n):
        p[k] *= inv


@njit(nogil=True, cache=True, error_model="numpy")
def softmax_backward(p, dp, dz):
    """dz += π ⊙ (dp − Σ_k π_k dp_k)   (the softmax Jacobian diag(π) − π πᵀ applied to dp)."""
    n = p.shape[0]
    s = _ZERO
    for k in range(n):
        s += p[k] * dp[k]
    for k in range(n):
        dz[k] += p[k] * (dp[k] - s)
