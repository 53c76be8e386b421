"""Exploration policies and schedules: ε-greedy with the paper's annealing, sampling from π.

Exploration for the Q methods (paper, §5.1): each thread samples its final ε once, from
{0.1, 0.01, 0.5} with probabilities {0.4, 0.3, 0.3}, and anneals ε linearly from 1 to it over
the first ``eps_anneal_steps`` global steps. A3C explores by sampling its stochastic policy.
The learning rate decays linearly to 0 over the run's budget.
"""

from numba import njit

from numba_a3c.algorithms.state import (
    A3C,
    C_T,
    CI_ALGO,
    CI_EPS_ANNEAL,
    CI_N_ACTIONS,
    CI_OUT_PI,
    CI_OUT_Q,
    TF_EPS_FINAL,
    TF_EPSILON,
)
from numba_a3c.nn.layers import softmax_forward
from numba_a3c.rng import rng_categorical, rng_integer, rng_uniform


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


@njit(nogil=True, cache=True, inline="always")
def choose_action(L, row):
    """The behaviour policy's action for the state whose forward pass is in ``L.ws[row]``."""
    A = L.config_i[CI_N_ACTIONS]
    if L.config_i[CI_ALGO] == A3C:
        off = L.config_i[CI_OUT_PI]
        return sample_policy(L.ws[row, off:off + A], L.scratch[0:A], L.rng)
    off = L.config_i[CI_OUT_Q]
    eps = epsilon_at(L.counters[C_T], L.config_i[CI_EPS_ANNEAL], L.thread_f[TF_EPS_FINAL])
    L.thread_f[TF_EPSILON] = eps
    return epsilon_greedy(L.ws[row, off:off + A], eps, L.rng)
