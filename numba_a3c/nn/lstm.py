"""The LSTM layer: one forward step, and backpropagation through time over a segment.

A3C-LSTM (the paper's strongest Atari agent) puts an LSTM between the body and the heads. Acting
computes one step at a time (:func:`lstm_forward`, like every forward kernel here); an update
backpropagates through the whole segment of t_max steps at once (:func:`lstm_backward`).

The step, with ⊙ the elementwise product and σ the logistic function (σ and tanh from
:mod:`numba_a3c.nn.activations`: exact in float64, a vectorisable rational function in float32)::

    z_t = x_t W + h_{t−1} U + b                       (4H pre-activations, gate order i, f, g, o)
    i_t = σ(z_t[i])   f_t = σ(z_t[f])   g_t = tanh(z_t[g])   o_t = σ(z_t[o])
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                   (the cell)
    h_t = o_t ⊙ tanh(c_t)                             (the output, read by the heads and by step t+1)

**Gate order**: the 4H columns of ``W`` (n_in, 4H), ``U`` (H, 4H) and ``b`` (4H,) are the input
gate i, the forget gate f, the cell candidate g and the output gate o, H columns each (the order
of PyTorch's ``nn.LSTM`` and of cuDNN). Checkpoints record it as the attribute ``gate_order =
"ifgo"``. **Initialisation**: W and U like a dense layer, b = 0 except the forget gate's bias,
which starts at 1 so that f ≈ 0.73 and the cell keeps its content at first (Jozefowicz et al.
2015); see :func:`lstm_init`.

Backward, for t = T−1 down to 0, from ∂L/∂h_t (the heads' gradient ``dH[t]`` plus what step t+1
sends back) and ∂L/∂c_t (what step t+1 sends back through its forget gate)::

    dh = dH[t] + dh_next
    do = dh ⊙ tanh(c_t)                     dz_o = do ⊙ o_t (1 − o_t)
    dc = dc_next + dh ⊙ o_t ⊙ (1 − tanh²(c_t))
    di = dc ⊙ g_t                           dz_i = di ⊙ i_t (1 − i_t)
    df = dc ⊙ c_{t−1}                       dz_f = df ⊙ f_t (1 − f_t)
    dg = dc ⊙ i_t                           dz_g = dg ⊙ (1 − g_t²)
    dh_next = dz_t Uᵀ   dc_next = dc ⊙ f_t

After step 0, ``dh_next`` and ``dc_next`` are ∂L/∂h_{−1} and ∂L/∂c_{−1}: the gradient that
reaches the state the segment started from. Truncated BPTT stops there (the state carried in
from the previous segment is a constant); the kernel still returns it, for the tests and for
anyone who wants to look. Only dh and dc travel back through time; with every dz_t known, the
parameter and input gradients are sums over the segment, taken after the loop::

    dW += Σ_t x_tᵀ dz_t     dU += Σ_t h_{t−1}ᵀ dz_t     db += Σ_t dz_t     dX[t] += dz_t Wᵀ

(row k of dW is then read and written once per four steps, not at every step: with Atari's 256
cells dW and dU are 1 MiB each, and this order made the atari-lstm segment about 10 % faster).
docs/backprop.md derives each line and gives the measurement.

Storage: a segment of T steps keeps ``Hs`` and ``Cs`` of shape (T+1, H) with row 0 the state
the segment started from and row t+1 the state after step t, the post-activation gates ``G``
(T, 4H) and ``TC`` = tanh(c_t) (T, H). Every kernel is ``@njit(nogil=True, cache=True)``,
float32-clean and generic (float64 arrays give the float64 versions the finite-difference tests
use); backward kernels accumulate parameter and input gradients like the other layers.
"""

import numpy as np

from numba_a3c.jit import njit
from numba_a3c.nn.activations import sigmoid, tanh
from numba_a3c.nn.layers import add_dZWt, add_XtdZ, add_xW

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)

GATE_ORDER = "ifgo"
FORGET_BIAS = 1.0


def lstm_init(rng, n_in, H, dtype=np.float32):
    """(W, U, b) initialised as the module docstring says: W, U ~ U(−1/√fan_in, 1/√fan_in)
    (fan_in = n_in for W, H for U), b = 0 except the forget gate's, which is 1."""
    W = rng.uniform(-1.0, 1.0, (n_in, 4 * H)) / np.sqrt(n_in)
    U = rng.uniform(-1.0, 1.0, (H, 4 * H)) / np.sqrt(H)
    b = np.zeros(4 * H)
    b[H:2 * H] = FORGET_BIAS
    return W.astype(dtype), U.astype(dtype), b.astype(dtype)


@njit(nogil=True, cache=True, error_model="numpy")
def lstm_forward(x, W, U, b, h_prev, c_prev, gates, c, tc, h):
    """One step: from x (n_in,) and the state (h_prev, c_prev), write the gates i, f, g, o
    (``gates``, 4H, post-activation), the cell ``c`` (H), ``tc`` = tanh(c) (H) and ``h`` (H).

    ``h`` may not alias ``h_prev`` (nor ``c`` ``c_prev``): keep the states of a segment in rows
    of (T+1, H) arrays, as the backward pass needs them all.
    """
    H = h.shape[0]
    for j in range(4 * H):
        gates[j] = b[j]
    add_xW(x, W, gates)                    # z += x W (skips zero inputs)
    add_xW(h_prev, U, gates)               # z += h_prev U
    for j in range(H):
        i = sigmoid(gates[j])
        f = sigmoid(gates[H + j])
        g = tanh(gates[2 * H + j])
        o = sigmoid(gates[3 * H + j])
        gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j] = i, f, g, o
        c[j] = f * c_prev[j] + i * g
        tc[j] = tanh(c[j])
        h[j] = o * tc[j]


@njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
def lstm_backward(X, W, U, Hs, Cs, G, TC, dH, dW, dU, db, dX, dh0, dc0, dZ, need_dX):
    """Backpropagation through time over the T = ``X.shape[0]`` steps of a segment.

    X (T, n_in) the inputs; Hs, Cs (T+1, H) the states (row 0: the segment's initial state);
    G (T, 4H) and TC (T, H) as written by :func:`lstm_forward`; dH (T, H) = ∂L/∂h_t from the
    heads. Accumulates dW (n_in, 4H), dU (H, 4H), db (4H,) and, if ``need_dX``, dX (T, n_in);
    writes dh0, dc0 (H,): ∂L/∂h and ∂L/∂c of the initial state, and dZ (T, 4H): ∂L/∂z_t, the
    gates' pre-activation gradients (an array of its own: writing it over ``G`` would be correct
    but would keep the gate loop from vectorising). The gradient arriving from beyond the segment
    is 0 (truncated BPTT). The products are :mod:`numba_a3c.nn.layers`' ``add_*`` loops.
    """
    T = X.shape[0]
    H = dh0.shape[0]
    dh_next = dh0     # dh0 and dc0 carry dh_next and dc_next through the loop
    dc_next = dc0
    for j in range(H):
        dh_next[j] = 0.0    # assigned, not multiplied by 0: the caller's arrays may hold NaN (np.empty)
        dc_next[j] = 0.0
    dh_row = dh_next.reshape((1, H))
    for t in range(T - 1, -1, -1):     # through time: only dh and dc flow back
        for j in range(H):
            i, f, g, o = G[t, j], G[t, H + j], G[t, 2 * H + j], G[t, 3 * H + j]
            tc = TC[t, j]
            dh = dH[t, j] + dh_next[j]
            dc = dc_next[j] + dh * o * (_ONE - tc * tc)
            dZ[t, j] = dc * g * i * (_ONE - i)                     # input gate
            dZ[t, H + j] = dc * Cs[t, j] * f * (_ONE - f)          # forget gate
            dZ[t, 2 * H + j] = dc * i * (_ONE - g * g)             # cell candidate
            dZ[t, 3 * H + j] = dh * tc * o * (_ONE - o)            # output gate
            dc_next[j] = dc * f
            dh_next[j] = _ZERO
        add_dZWt(dZ[t:t + 1], U, dh_row)                           # dh_next = dz_t Uᵀ
    for t in range(T):                                             # the sums over the segment
        for j in range(4 * H):
            db[j] += dZ[t, j]
    add_XtdZ(X, dZ, dW)                                            # dW += Σ x_tᵀ dz_t
    add_XtdZ(Hs[0:T], dZ, dU)                                      # dU += Σ h_{t−1}ᵀ dz_t
    if need_dX:
        add_dZWt(dZ, W, dX)                                        # dX[t] += dz_t Wᵀ
