"""Asynchronous advantage actor-critic, A3C (Algorithm S3 of Mnih et al. 2016).

Per thread::

    dθ ← 0;  θ′ ← θ;  t_start ← t;  get s_t
    repeat  a_t ~ π(·|s_t; θ′);  take it, observe r_t, s_{t+1};  t ← t + 1;  T ← T + 1
    until s_t terminal or t − t_start == t_max
    R ← 0 if s_t terminal else V(s_t; θ′)
    for i = t−1 down to t_start:
        R ← r_i + γ R;   A ← R − V(s_i; θ′)
        dθ ← dθ + ∇θ′ log π(a_i|s_i; θ′) A + β ∇θ′ H(π(s_i; θ′))      (policy, ascent)
        dθ ← dθ + c_v ∂(½ A²)/∂θ′                                       (value, descent)
    apply dθ to θ

c_v is ``--value-weight`` (1, the paper's loss, unless a preset says otherwise). Where the body is
shared, a value whose targets are far from 1 in size (MountainCar-v0's returns near −86) sends the
body a gradient that swamps the policy's; the generic preset's c_v = 0.04 shrinks that share
(README, "MountainCar-v0 with the generic defaults"). c_v scales ∂L/∂V only; the advantage A that
the policy term reads is unchanged.

The policy and the value share the body; π is a softmax head (or, for Box actions, a Gaussian
with a linear mean μ and a softplus variance per dimension: :func:`gaussian_segment_loss`), V a
linear head. There is no
target network. A time-limit truncation is not terminal: R bootstraps from V(s_t; θ′).
:func:`segment_gradient` is the part after ``until``; the forward passes of the segment's
states were computed while acting, under the same θ′, and are reused by the backward pass.
"""

import numpy as np

from numba_a3c.algorithms.state import (
    CF_BETA,
    CF_GAMMA,
    CF_VALUE_WEIGHT,
    CI_GAUSSIAN,
    CI_N_ACTIONS,
    CI_OUT_ACTION,
    CI_OUT_MU,
    CI_OUT_PI,
    CI_OUT_SIGMA,
    CI_OUT_V,
    SEG_TERMINAL,
    TF_ENTROPY,
    TF_LOSS,
    TF_VALUE,
    TI_SEGMENT_END,
)
from numba_a3c.jit import njit
from numba_a3c.nn.losses import a3c_loss, gaussian_a3c_loss
from numba_a3c.nn.network import backward_rows, forward_row
from numba_a3c.targets import n_step_returns


@njit(nogil=True, cache=True, inline="always")
def segment_gradient(L, n):
    """dθ′ for the segment s_0 … s_{n−1}; returns the total loss (policy − β·entropy + c_v·value)."""
    A = L.config_i[CI_N_ACTIONS]
    pi_off = L.config_i[CI_OUT_PI]
    v_off = L.config_i[CI_OUT_V]
    beta = L.config_f[CF_BETA]
    if L.thread_i[TI_SEGMENT_END] == SEG_TERMINAL:
        bootstrap = 0.0
    else:
        forward_row(L.table, L.theta_local, L.obs, L.ws, n)  # R ← V(s_n; θ′)
        bootstrap = L.ws[n, v_off]
    n_step_returns(L.rewards, L.config_f[CF_GAMMA], bootstrap, n, L.returns)
    value = 0.0
    for i in range(n):
        value += L.ws[i, v_off]
    if L.config_i[CI_GAUSSIAN] != 0:
        policy_loss, value_loss, entropy = gaussian_segment_loss(L, n)
    else:
        policy_loss, value_loss, entropy = a3c_loss(
            L.ws[:, pi_off:pi_off + A], L.ws[:, v_off:v_off + 1], L.actions, L.returns, beta,
            L.delta[:, pi_off:pi_off + A], L.delta[:, v_off:v_off + 1], L.scratch[A:2 * A], n,
        )
    c_v = np.float32(L.config_f[CF_VALUE_WEIGHT])
    for i in range(n):
        L.delta[i, v_off] *= c_v                               # ∂(c_v·½A²)/∂V = c_v (V − R)
    backward_rows(L.table, L.theta_local, L.grads, L.obs, L.ws, L.delta, n, L.backward_scratch)
    loss = policy_loss - beta * entropy + c_v * value_loss
    L.thread_f[TF_LOSS] = loss
    L.thread_f[TF_ENTROPY] = entropy / n
    L.thread_f[TF_VALUE] = value / n
    return loss


@njit(nogil=True, cache=True, inline="always")
def gaussian_segment_loss(L, n):
    """The Gaussian policy's A3C loss of the segment (returns already in ``L.returns``): ∂L/∂μ,
    ∂L/∂s and ∂L/∂V written into ``L.delta``'s head columns; the actions are the unclipped samples
    left in each row's action slot by :func:`~numba_a3c.algorithms.policies.choose_action`."""
    D = L.config_i[CI_N_ACTIONS]
    mu = L.config_i[CI_OUT_MU]
    sg = L.config_i[CI_OUT_SIGMA]
    a = L.config_i[CI_OUT_ACTION]
    v = L.config_i[CI_OUT_V]
    return gaussian_a3c_loss(
        L.ws[:, mu:mu + D], L.ws[:, sg:sg + D], L.ws[:, v:v + 1], L.ws[:, a:a + D], L.returns,
        L.config_f[CF_BETA], L.delta[:, mu:mu + D], L.delta[:, sg:sg + D], L.delta[:, v:v + 1], n,
    )
