"""Targets and returns of the asynchronous methods, as tiny pure functions.

Names carry time indices in the style of rlax: ``r_t`` is the reward received on the step from
s_{t−1} to s_t, ``discount_t`` is γ, or 0 when s_t is terminal, and ``q_t`` the Q-values of s_t
under the target parameters θ⁻. One-step Q-learning and Sarsa differ in one line: the bootstrap.
A time-limit truncation is not terminal: its discount stays γ and the target bootstraps.
"""

from numba_a3c.jit import njit


@njit(nogil=True, cache=True)
def q_learning_target(r_t, discount_t, q_t):
    """Algorithm 1: y = r + γ max_a′ Q(s′, a′; θ⁻)   (y = r at a terminal s′, where discount_t = 0)."""
    best = q_t[0]
    for k in range(1, q_t.shape[0]):
        if q_t[k] > best:
            best = q_t[k]
    return r_t + discount_t * best


@njit(nogil=True, cache=True)
def sarsa_target(r_t, discount_t, q_t, a_t):
    """One-step Sarsa: y = r + γ Q(s′, a′; θ⁻), where a′ is the action the thread then takes in s′."""
    return r_t + discount_t * q_t[a_t]


@njit(nogil=True, cache=True)
def n_step_returns(rewards, gamma, bootstrap, n, out):
    """Algorithms S2 and S3: forward-view returns of a segment of n steps.

        R ← bootstrap;  for i = n−1 down to 0:  R ← r_i + γ R;  out[i] = R

    ``bootstrap`` is 0 if the segment ended in a terminal state, else max_a Q(s_n, a; θ⁻)
    (n-step Q) or V(s_n; θ′) (A3C). The last state gets a one-step return, the first an n-step one.
    Accumulates in float64.
    """
    R = float(bootstrap)
    for i in range(n - 1, -1, -1):
        R = float(rewards[i]) + gamma * R
        out[i] = R
