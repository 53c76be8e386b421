"""Asynchronous n-step Q-learning (Algorithm S2 of Mnih et al. 2016).

Per thread::

    dθ ← 0;  θ′ ← θ;  t_start ← t;  get s_t
    repeat  a_t ← ε-greedy on Q(s_t, ·; θ′);  take it, observe r_t, s_{t+1};  t ← t + 1;  T ← T + 1
    until s_t terminal or t − t_start == t_max
    R ← 0 if s_t terminal else max_a Q(s_t, a; θ⁻)
    for i = t−1 down to t_start:  R ← r_i + γ R;  dθ ← dθ + ∂(R − Q(s_i, a_i; θ′))² / ∂θ′
    apply dθ to θ;  θ⁻ ← θ every I_target global steps

The acting loop lives in :mod:`.learner` (``begin_segment`` copies θ′, ``act`` runs the forward
pass under θ′ and keeps its activations). :func:`segment_gradient` is the part after ``until``:
the bootstrap, the forward-view returns, and one backward pass over the whole segment that
reuses the acting forward passes (they were computed under the same θ′).
"""

from numba_a3c.algorithms.state import (
    CF_GAMMA,
    CI_N_ACTIONS,
    CI_OUT_Q,
    SEG_TERMINAL,
    TF_LOSS,
    TF_VALUE,
    TI_SEGMENT_END,
)
from numba_a3c.jit import njit
from numba_a3c.nn.losses import q_loss
from numba_a3c.nn.network import backward_rows, forward_row
from numba_a3c.targets import n_step_returns, q_learning_target


@njit(nogil=True, cache=True, inline="always")
def segment_gradient(L, n):
    """dθ′ for the segment s_0 … s_{n−1} (bootstrapping from s_n); returns the summed squared error."""
    A = L.config_i[CI_N_ACTIONS]
    q_off = L.config_i[CI_OUT_Q]
    gamma = L.config_f[CF_GAMMA]
    if L.thread_i[TI_SEGMENT_END] == SEG_TERMINAL:
        bootstrap = 0.0
    else:
        # R ← max_a Q(s_n, a; θ⁻): q_learning_target with r = 0 and discount 1 is exactly that max.
        forward_row(L.table, L.theta_target, L.obs, L.tws, n)
        bootstrap = q_learning_target(0.0, 1.0, L.tws[n, q_off:q_off + A])
    n_step_returns(L.rewards, gamma, bootstrap, n, L.returns)
    value = 0.0
    for i in range(n):
        value += L.ws[i, q_off + L.actions[i]]
    loss = q_loss(L.ws[:, q_off:q_off + A], L.actions, L.returns, L.delta[:, q_off:q_off + A], n)
    backward_rows(L.table, L.theta_local, L.grads, L.obs, L.ws, L.delta, n, L.backward_scratch)
    L.thread_f[TF_LOSS] = loss
    L.thread_f[TF_VALUE] = value / n
    return loss
