"""Exploration policies and schedules: ε-greedy with the paper's annealing, sampling from π.

Exploration for the Q methods (paper, §5.1): each thread samples its final ε once, from
{0.1, 0.01, 0.5} with probabilities {0.4, 0.3, 0.3}, and anneals ε linearly from 1 to it over
the first ``eps_anneal_steps`` global steps. A3C explores by sampling its stochastic policy:
the softmax π over discrete actions, or for Box actions the Gaussian N(μ, σ²) per dimension
(:func:`sample_gaussian`), whose sample is kept unclipped for the loss while the environment gets
it clipped to [−1, 1] and scaled to its bounds (:func:`scale_action`).
The learning rate decays linearly to 0 over the run's budget.
"""

import numpy as np

from numba_a3c.algorithms.state import (
    A3C,
    C_T,
    CF_SIZE,
    CI_ALGO,
    CI_EPS_ANNEAL,
    CI_GAUSSIAN,
    CI_N_ACTIONS,
    CI_OUT_ACTION,
    CI_OUT_MU,
    CI_OUT_PI,
    CI_OUT_Q,
    CI_OUT_SIGMA,
    TF_EPS_FINAL,
    TF_EPSILON,
)
from numba_a3c.jit import njit
from numba_a3c.nn.layers import softmax_forward
from numba_a3c.nn.losses import VAR_MIN, softplus
from numba_a3c.rng import rng_categorical, rng_integer, rng_normal, rng_uniform


@njit(nogil=True, cache=True)
def epsilon_at(T, anneal_steps, eps_final):
    """ε annealed linearly from 1 to the thread's final ε over the first ``anneal_steps`` global steps."""
    if anneal_steps <= 0 or T >= anneal_steps:
        return eps_final
    return 1.0 + (eps_final - 1.0) * (T / anneal_steps)


@njit(nogil=True, cache=True)
def learning_rate_at(T, lr0, budget, anneal):
    """η annealed linearly from lr0 to 0 over the global budget T_max (constant if anneal == 0)."""
    if anneal == 0 or budget <= 0:
        return lr0
    frac = 1.0 - T / budget
    return lr0 * frac if frac > 0.0 else 0.0


@njit(nogil=True, cache=True)
def argmax(x):
    """Index of the largest entry (the first one on ties)."""
    best = 0
    for k in range(1, x.shape[0]):
        if x[k] > x[best]:
            best = k
    return best


@njit(nogil=True, cache=True)
def epsilon_greedy(q, epsilon, rng):
    """With probability ε a uniformly random action, else argmax_a Q(s, a)."""
    if rng_uniform(rng) < epsilon:
        return rng_integer(rng, q.shape[0])
    return argmax(q)


@njit(nogil=True, cache=True)
def sample_policy(logits, probs, rng):
    """a ~ π(·|s) = softmax(logits); ``probs`` is scratch of the same length."""
    softmax_forward(logits, probs)
    return rng_categorical(rng, probs, probs.shape[0])


@njit(nogil=True, cache=True)
def sample_gaussian(mu, s, rng, out):
    """out_k ← μ_k + σ_k ε_k, ε_k ~ N(0, 1), with σ²_k = softplus(s_k) + VAR_MIN: a sample of the
    Gaussian policy, unclipped (the loss's log-likelihood is of exactly this value)."""
    for k in range(mu.shape[0]):
        sigma = np.sqrt(softplus(s[k]) + VAR_MIN)
        out[k] = mu[k] + sigma * np.float32(rng_normal(rng))


@njit(nogil=True, cache=True)
def gaussian_mean(mu, out):
    """out ← μ: the Gaussian policy's most likely action (greedy evaluation)."""
    for k in range(mu.shape[0]):
        out[k] = mu[k]


@njit(nogil=True, cache=True)
def scale_action(a, config_f, out):
    """What the environment is sent for the unit-box action ``a``: out_k = c_k + h_k · clip(a_k, −1, 1),
    with c_k, h_k the centre and half-width of dimension k's bounds, read from ``config_f`` after
    ``CF_SIZE`` (see :mod:`.state`); an unbounded dimension (h_k = 0) gets a_k itself."""
    for k in range(a.shape[0]):
        c = config_f[CF_SIZE + 2 * k]
        h = config_f[CF_SIZE + 2 * k + 1]
        if h > 0.0:
            out[k] = c + h * min(max(a[k], -1.0), 1.0)
        else:
            out[k] = a[k]


def action_bounds_array(low, high):
    """(c_0, h_0, c_1, h_1, …): each dimension's centre (low + high)/2 and half-width (high − low)/2,
    as :func:`scale_action` reads them; (0, 0) for an unbounded one."""
    out = np.zeros(2 * len(low), np.float64)
    for k, (lo, hi) in enumerate(zip(low, high)):
        if np.isfinite(lo) and np.isfinite(hi):
            out[2 * k], out[2 * k + 1] = (lo + hi) / 2.0, (hi - lo) / 2.0
    return out


@njit(nogil=True, cache=True, inline="always")
def choose_action(L, row):
    """The behaviour policy's action for the state whose forward pass is in ``L.ws[row]``.

    A Gaussian policy writes its sampled (unclipped) action vector into the row's action slot
    ``L.ws[row, CI_OUT_ACTION:…]`` and returns 0."""
    A = L.config_i[CI_N_ACTIONS]
    if L.config_i[CI_GAUSSIAN] != 0:
        mu = L.config_i[CI_OUT_MU]
        sg = L.config_i[CI_OUT_SIGMA]
        out = L.config_i[CI_OUT_ACTION]
        sample_gaussian(L.ws[row, mu:mu + A], L.ws[row, sg:sg + A], L.rng, L.ws[row, out:out + A])
        return 0
    if L.config_i[CI_ALGO] == A3C:
        off = L.config_i[CI_OUT_PI]
        return sample_policy(L.ws[row, off:off + A], L.scratch[0:A], L.rng)
    off = L.config_i[CI_OUT_Q]
    eps = epsilon_at(L.counters[C_T], L.config_i[CI_EPS_ANNEAL], L.thread_f[TF_EPS_FINAL])
    L.thread_f[TF_EPSILON] = eps
    return epsilon_greedy(L.ws[row, off:off + A], eps, L.rng)
