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
body a gradient that swamps the policy's; c_v = 0.04 shrinks that share (README, "MountainCar-v0
with the generic defaults"). c_v scales ∂L/∂V only; the advantage A that the policy term reads is
unchanged.

``--normalize-value`` (PopArt, van Hasselt et al. 2016, "Learning values across many orders of
magnitude") lets the value head learn returns in units of their own scale: it outputs v̂ and
V = σ v̂ + μ, where μ and σ² are moving averages of the returns R_i (shared by the threads,
``value_stats``). Each segment folds its returns in, (μ, σ) → (μ′, σ′), and rescales the head so
that no V changes (:func:`normalize_targets`); the value term is then ½(R̂ − v̂)² with
R̂ = (R − μ′)/σ′, whose gradient is (V − R)/σ′: of order one whatever the rewards' scale. The policy
reads the raw advantage A = R − V, or with ``--normalize-advantage`` A/σ′ (which makes β's weight
relative to the returns' spread). The generic preset turns both on (with RMSProp ε 1e-5); every
environment's own preset leaves them off: README, "Value normalisation".

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
    CF_VALUE_RATE,
    CF_VALUE_WEIGHT,
    CI_GAUSSIAN,
    CI_N_ACTIONS,
    CI_NORMALIZE_VALUE,
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
    VS_COUNT,
    VS_MEAN,
    VS_SECOND,
)
from numba_a3c.jit import njit
from numba_a3c.nn.losses import a3c_loss, gaussian_a3c_loss
from numba_a3c.nn.network import T_B, T_IN_SIZE, T_W, backward_rows, forward_row
from numba_a3c.normalize import value_moments
from numba_a3c.targets import n_step_returns


@njit(nogil=True, cache=True, inline="always")
def segment_gradient(L, n):
    """dθ′ for the segment s_0 … s_{n−1}; returns the total loss (policy − β·entropy + c_v·value)."""
    A = L.config_i[CI_N_ACTIONS]
    pi_off = L.config_i[CI_OUT_PI]
    v_off = L.config_i[CI_OUT_V]
    beta = L.config_f[CF_BETA]
    normalized = L.config_i[CI_NORMALIZE_VALUE] != 0
    mu, sigma = value_moments(L.value_stats) if normalized else (0.0, 1.0)
    if L.thread_i[TI_SEGMENT_END] == SEG_TERMINAL:
        bootstrap = 0.0
    else:
        forward_row(L.table, L.theta_local, L.obs, L.ws, n)  # R ← V(s_n; θ′)
        bootstrap = sigma * L.ws[n, v_off] + mu
    n_step_returns(L.rewards, L.config_f[CF_GAMMA], bootstrap, n, L.returns)
    value = 0.0
    for i in range(n):
        value += sigma * L.ws[i, v_off] + mu
    # With --normalize-value the loss kernel reads V and R in the new units, so its advantage is
    # Â = A/σ′; unless --normalize-advantage, the policy's term is weighted by σ′, which gives it
    # back the raw advantage A (the entropy term keeps its β).
    policy_scale = 1.0
    if normalized:
        sigma2 = normalize_targets(L, n, mu, sigma)
        if L.config_i[CI_NORMALIZE_VALUE] == 1:
            policy_scale = sigma2
    c_v = L.config_f[CF_VALUE_WEIGHT]
    if L.config_i[CI_GAUSSIAN] != 0:
        policy_loss, value_loss, entropy = gaussian_segment_loss(L, n, beta, policy_scale, c_v)
    else:
        policy_loss, value_loss, entropy = a3c_loss(
            L.ws[:, pi_off:pi_off + A], L.ws[:, v_off:v_off + 1], L.actions, L.returns, beta, policy_scale, c_v,
            L.delta[:, pi_off:pi_off + A], L.delta[:, v_off:v_off + 1], L.scratch[A:2 * A], n,
        )
    backward_rows(L.table, L.theta_local, L.grads, L.obs, L.ws, L.delta, n, L.backward_scratch)
    loss = policy_scale * policy_loss - beta * entropy + c_v * value_loss
    L.thread_f[TF_LOSS] = loss
    L.thread_f[TF_ENTROPY] = entropy / n
    L.thread_f[TF_VALUE] = value / n
    return loss


@njit(nogil=True, cache=True, inline="always")
def gaussian_segment_loss(L, n, beta, policy_weight, value_weight):
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
        beta, policy_weight, value_weight, L.delta[:, mu:mu + D], L.delta[:, sg:sg + D], L.delta[:, v:v + 1], n,
    )


@njit(nogil=True, cache=True, inline="always")
def normalize_targets(L, n, mu, sigma):
    """``--normalize-value`` (PopArt, van Hasselt et al. 2016): fold the segment's returns into the
    shared statistics, (μ, σ) → (μ′, σ′); rescale the value head so that every V = σ v̂ + μ is
    unchanged, v̂′ = (σ v̂ + μ − μ′)/σ′ (W ← W σ/σ′, b ← (σ b + μ − μ′)/σ′, in θ and θ′); then
    hand the loss the segment's outputs and returns in the new units."""
    stats = L.value_stats
    rate = L.config_f[CF_VALUE_RATE]
    for i in range(n):
        R = np.float64(L.returns[i])
        count = stats[VS_COUNT] + 1.0
        stats[VS_COUNT] = count
        step = max(1.0 / count, rate)
        stats[VS_MEAN] += step * (R - stats[VS_MEAN])
        stats[VS_SECOND] += step * (R * R - stats[VS_SECOND])
    mu2, sigma2 = value_moments(stats)
    head = L.table.shape[0] - 1                     # the value head is the network's last layer
    w, b, H = L.table[head, T_W], L.table[head, T_B], L.table[head, T_IN_SIZE]
    k = np.float32(sigma / sigma2)
    shift = np.float32((mu - mu2) / sigma2)
    for j in range(w, w + H):
        L.theta[j] *= k
        L.theta_local[j] *= k
    L.theta[b] = k * L.theta[b] + shift
    L.theta_local[b] = k * L.theta_local[b] + shift
    v_off = L.config_i[CI_OUT_V]
    for i in range(n):
        L.ws[i, v_off] = k * L.ws[i, v_off] + shift
        L.returns[i] = np.float32((L.returns[i] - mu2) / sigma2)
    return sigma2
