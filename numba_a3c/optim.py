"""Optimisers as kernels on flat float32 arrays, and clipping by global norm.

All three read a gradient Δθ (the ``grads`` array, same layout as θ), optionally scaled by a
clipping factor c, and update θ in place. Under Hogwild the θ and statistics arrays may be
shared by all threads and written without locks; each kernel only ever does element-wise
read-modify-writes of aligned float32s, so a race can lose an update but never corrupt memory.

The paper's three variants (Mnih et al. 2016, section 4 and supplementary section 7):

* **Shared RMSProp** — :func:`rmsprop_update` with ONE ``g`` array shared by every thread:

      g ← α g + (1 − α) Δθ²
      θ ← θ − η Δθ / √(g + ε)          (ε inside the square root; g starts at 0)

* **RMSProp with per-thread statistics** — the same kernel with a ``g`` private to the thread.
* **Momentum SGD** (per-thread momentum) — :func:`momentum_update`:

      m ← α m + (1 − α) Δθ
      θ ← θ − η m

g is flushed to 0 once it falls under 1e-30: after a long run of zero gradients it would
otherwise decay into denormal floats, which are 3–5× slower to compute with.
"""

import numpy as np

from numba_a3c.jit import njit

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_TINY = np.float32(1e-30)


@njit(nogil=True, cache=True, error_model="numpy", fastmath={"reassoc"})
def global_norm(grads):
    """‖Δθ‖₂ over the whole flat gradient, accumulated in float64 (it is compared with a clip value).

    ``reassoc`` lets LLVM split the sum into vector lanes: without it the float64 sum is one
    serial chain of additions (360 µs for the Atari network's 678k parameters, 25 µs with it).
    The lanes make the rounding differ from a left-to-right sum, well inside float64 precision;
    the result is still the same for the same array on the same machine.
    """
    s = 0.0
    for i in range(grads.shape[0]):
        x = np.float64(grads[i])
        s += x * x
    return np.sqrt(s)


@njit(nogil=True, cache=True)
def clip_scale(norm, max_norm):
    """The factor c = min(1, max_norm / ‖Δθ‖) of clipping by global norm (1 when max_norm ≤ 0)."""
    if max_norm <= 0.0 or norm <= max_norm:
        return 1.0
    return max_norm / norm


@njit(nogil=True, cache=True, error_model="numpy")
def rmsprop_update(theta, grads, g, lr, alpha, eps, scale, sync=None):
    """One RMSProp step with Δθ = scale · grads (see the module docstring for the equations).

    Pass the shared ``g`` for the paper's shared RMSProp, a thread's own ``g`` for per-thread
    RMSProp. lr, alpha, eps and scale are converted to float32 once, outside the loop.

    With ``sync`` (the thread's θ′), the same pass also does what the worker does next: it writes
    each new θ_i into θ′_i (the next segment's θ′ ← θ) and zeroes grads_i (dθ ← 0). One sweep over
    the arrays instead of three; what is computed is the same (θ′_i is θ_i as this thread just
    wrote it; another thread's later write to θ_i reaches θ′ at the following segment, which a
    separate copy could only have caught within the instant between the two).
    """
    lr32 = np.float32(lr)
    a = np.float32(alpha)
    one_minus_a = _ONE - a
    e = np.float32(eps)
    c = np.float32(scale)
    for i in range(theta.shape[0]):
        d = c * grads[i]
        gi = a * g[i] + one_minus_a * d * d
        gi = gi if gi > _TINY else _ZERO
        g[i] = gi
        t = theta[i] - lr32 * d / np.sqrt(gi + e)
        theta[i] = t
        if sync is not None:
            sync[i] = t
            grads[i] = _ZERO


@njit(nogil=True, cache=True, error_model="numpy")
def momentum_update(theta, grads, m, lr, alpha, scale, sync=None):
    """One momentum-SGD step: m ← α m + (1 − α) Δθ;  θ ← θ − η m, with Δθ = scale · grads.

    ``sync``: as in :func:`rmsprop_update` (θ′ ← new θ and dθ ← 0 in the same pass)."""
    lr32 = np.float32(lr)
    a = np.float32(alpha)
    one_minus_a = _ONE - a
    c = np.float32(scale)
    for i in range(theta.shape[0]):
        mi = a * m[i] + one_minus_a * c * grads[i]
        m[i] = mi
        t = theta[i] - lr32 * mi
        theta[i] = t
        if sync is not None:
            sync[i] = t
            grads[i] = _ZERO
