"""Asynchronous one-step Q-learning and one-step Sarsa (Algorithm 1 of Mnih et al. 2016).

Per thread, the paper's loop is::

    a ← ε-greedy on Q(s, ·; θ);  take a, observe r, s′
    y ← r                                   if s′ is terminal
        r + γ max_a′ Q(s′, a′; θ⁻)           otherwise            (Sarsa: r + γ Q(s′, a′; θ⁻))
    dθ ← dθ + ∂(y − Q(s, a; θ))² / ∂θ
    T ← T + 1; t ← t + 1;  θ⁻ ← θ every I_target global steps
    every I_AsyncUpdate local steps or at a terminal s: apply dθ to θ; dθ ← 0

The learner collects the transitions between two updates (at most I_AsyncUpdate of them) and
:func:`segment_gradient` sums their gradients in one backward pass.

Each step's gradient is taken at the θ its forward pass used. The thread acts on θ′, a copy of
the shared θ taken when the segment starts (as n-step Q and A3C do), so the activations that the
backward pass reuses and the weights it propagates through are the same parameters. Backing up
through the live shared θ instead would mix activations computed under one θ with weights that
other threads have changed since. With one thread θ does not change between two updates, so
θ′ = θ and the batched sum equals the paper's step-by-step accumulation exactly; with several,
a step's action comes from a θ at most I_AsyncUpdate local steps old (Hogwild reads are stale by
some amount anyway). For Sarsa, a′ in the last transition is chosen here, before the update,
and then taken as the next action (``TI_PENDING_ACTION``).
"""

import numpy as np

from numba_a3c.algorithms.policies import choose_action
from numba_a3c.algorithms.state import (
    CF_GAMMA,
    CI_N_ACTIONS,
    CI_OUT_Q,
    SEG_TERMINAL,
    TF_LOSS,
    TF_VALUE,
    TI_EPISODE_OVER,
    TI_PENDING_ACTION,
    TI_SEGMENT_END,
)
from numba_a3c.jit import njit
from numba_a3c.nn.losses import q_loss
from numba_a3c.nn.network import backward_rows, forward_row
from numba_a3c.targets import q_learning_target, sarsa_target


@njit(nogil=True, cache=True, inline="always")
def segment_gradient(L, n, sarsa):
    """dθ for the n transitions of the segment, at θ′; returns the summed squared TD error.

    Row i of the buffers holds s_i (``obs[i]``), its forward pass under θ′ (``ws[i]``), a_i and
    r_i; s′_i is s_{i+1} (``obs[i+1]``), evaluated under θ⁻ into ``tws[i+1]``.
    """
    A = L.config_i[CI_N_ACTIONS]
    q_off = L.config_i[CI_OUT_Q]
    gamma = L.config_f[CF_GAMMA]
    terminal_last = L.thread_i[TI_SEGMENT_END] == SEG_TERMINAL
    a_last = -1
    if sarsa and not terminal_last:
        # a′ for the last s′ = s_n: chosen now with θ′, before the update, and taken as the next
        # action if the episode goes on (after a time-limit truncation it only bootstraps).
        forward_row(L.table, L.theta_local, L.obs, L.ws, n)
        a_last = choose_action(L, n)
        L.thread_i[TI_PENDING_ACTION] = a_last if L.thread_i[TI_EPISODE_OVER] == 0 else -1
    value = 0.0
    for i in range(n):
        last = i == n - 1
        discount = 0.0 if (last and terminal_last) else gamma
        r = np.float64(L.rewards[i])
        if discount == 0.0:
            y = r
        else:
            forward_row(L.table, L.theta_target, L.obs, L.tws, i + 1)
            q_next = L.tws[i + 1, q_off:q_off + A]
            if sarsa:
                a_next = a_last if last else L.actions[i + 1]
                y = sarsa_target(r, discount, q_next, a_next)
            else:
                y = q_learning_target(r, discount, q_next)
        L.returns[i] = y
        value += L.ws[i, q_off + L.actions[i]]
    loss = q_loss(L.ws[:, q_off:q_off + A], L.actions, L.returns, L.delta[:, q_off:q_off + A], n)
    backward_rows(L.table, L.theta_local, L.grads, L.obs, L.ws, L.delta, n, L.backward_scratch)
    L.thread_f[TF_LOSS] = loss
    L.thread_f[TF_VALUE] = value / n
    return loss
