"""The actor-learner loop shared by the four methods, as nopython step functions.

Every method in the paper has the same skeleton: act for a while, then turn what was seen into a
gradient and apply it to the shared parameters. Here that skeleton is four functions:

``begin_segment(L)``   θ′ ← θ (unless the last update already wrote it); the segment starts empty.
``act(L)``             forward pass on s_n (its activations are kept for the backward pass),
                       then ε-greedy (Q methods) or a sample of π (A3C); returns a_n.
``observe(L, r, terminal, truncated, episode_over)``
                       records r_n after the environment wrote s_{n+1} into ``L.obs[n+1]``;
                       counts T ← T + 1 and t ← t + 1; returns True when the segment is over.
``end_segment(L)``     computes the targets (the only place where the methods differ, each in
                       its own module: :mod:`.onestep`, :mod:`.nstep_q`, :mod:`.a3c`),
                       backpropagates, clips, applies the optimiser to the shared θ, refreshes
                       θ⁻ when due, and carries s_n over as the next segment's s_0 (and, for a
                       recurrent network, the LSTM state (h, c) reached at s_n; zero after an
                       episode's end).

:func:`numba_a3c.workers.run_native` runs them with a native (Numba) environment entirely in
nopython code; the gymnasium and Atari workers call the same functions from a Python loop, so
both paths train identically.

The step functions take the whole :class:`~numba_a3c.algorithms.state.Learner` tuple (25 arrays).
A call that is not inlined pays a reference-count increment and decrement on every one of those
arrays, which cost more than the CartPole network's forward pass itself. So the functions that
take ``L`` are marked ``inline="always"``: Numba inlines them at its IR level into the worker
loop (``run_native``: 218k → 390k steps/s for A3C on CartPole with one thread, and a shorter cold
compile). They remain ordinary functions when called from Python, as the tests do.
"""

import numpy as np

from numba_a3c.algorithms import a3c, nstep_q, onestep
from numba_a3c.algorithms.policies import choose_action, learning_rate_at
from numba_a3c.algorithms.state import (
    A3C,
    BUDGET_DONE,
    C_PAUSE_AT,
    C_STATUS,
    C_STOP,
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    CF_CLIP_NORM,
    CF_LR,
    CF_REWARD_CLIP,
    CF_RMS_ALPHA,
    CF_RMS_EPS,
    CI_ACTIVATION_SIZE,
    CI_ALGO,
    CI_ANNEAL_LR,
    CI_BUDGET,
    CI_OPTIMIZER,
    CI_T_MAX,
    CI_TARGET_INTERVAL,
    DIVERGED,
    EL_LENGTH,
    EL_RETURN,
    EL_T,
    MOMENTUM,
    NSTEP_Q,
    OK,
    ONESTEP_Q,
    SARSA,
    SEG_CUT,
    SEG_NONE,
    SEG_TERMINAL,
    SEG_TRUNCATED,
    SHARED_RMSPROP,
    STOPPED,
    TF_EPISODE_RETURN,
    TF_GRAD_NORM,
    TF_LR,
    TI_EPISODE_OVER,
    TI_EPISODE_STEPS,
    TI_EPISODES,
    TI_LOCAL_FRESH,
    TI_N,
    TI_PENDING_ACTION,
    TI_SEGMENT_END,
    TI_STEPS,
    TI_UPDATES,
)
from numba_a3c.atomics import atomic_add, atomic_cas
from numba_a3c.jit import njit
from numba_a3c.nn.network import carry_state, forward_row, reset_state
from numba_a3c.optim import clip_scale, global_norm, momentum_update, rmsprop_update


# ----------------------------------------------------------------------------- the step functions
@njit(nogil=True, cache=True, inline="always")
def begin_segment(L):
    """``dθ ← 0; θ′ ← θ; t_start ← t`` (Algorithms S2 and S3; the one-step methods take the same
    snapshot, see :mod:`.onestep`). dθ is already zero, and after an update θ′ is already θ: the
    optimiser's pass wrote both (:func:`apply_gradients`), so only the first segment of a thread,
    or one after a segment without an update, copies θ here."""
    if L.thread_i[TI_LOCAL_FRESH] == 0:
        L.theta_local[:] = L.theta
    L.thread_i[TI_LOCAL_FRESH] = 0
    L.thread_i[TI_N] = 0
    L.thread_i[TI_SEGMENT_END] = SEG_NONE


@njit(nogil=True, cache=True, inline="always")
def act(L):
    """``a_n ← policy(s_n)`` with a forward pass whose activations the backward pass reuses."""
    n = L.thread_i[TI_N]
    forward_row(L.table, L.theta_local, L.obs, L.ws, n)
    pending = L.thread_i[TI_PENDING_ACTION]
    if pending >= 0:
        # Sarsa chose this action (a′) before its last update; it is taken now, as in the paper.
        a = pending
        L.thread_i[TI_PENDING_ACTION] = -1
    else:
        a = choose_action(L, n)
    L.actions[n] = a
    return a


@njit(nogil=True, cache=True, inline="always")
def observe(L, reward, terminal, truncated, episode_over):
    """Record the transition (s_n, a_n, r_n, s_{n+1}); returns True when the segment must end.

    ``terminal``: s_{n+1} is terminal for learning (no bootstrap; on Atari also a lost life).
    ``truncated``: a time limit ended the episode; s_{n+1} is not terminal and bootstraps.
    ``episode_over``: the environment must be reset (the episode statistics are logged).
    The caller has already written s_{n+1} into ``L.obs[n + 1]``.
    """
    return observe_scaled(L, reward, reward, terminal, truncated, episode_over)


@njit(nogil=True, cache=True, inline="always")
def observe_scaled(L, reward, learn_reward, terminal, truncated, episode_over):
    """:func:`observe` where the learner is given ``learn_reward`` (then clipped by
    ``--reward-clip``) and the episode's logged return adds the raw ``reward``
    (:func:`numba_a3c.normalize.scale_reward` makes the one from the other)."""
    n = L.thread_i[TI_N]
    c = L.config_f[CF_REWARD_CLIP]
    r = learn_reward
    if c > 0.0:
        r = min(max(r, -c), c)
    L.rewards[n] = r
    n += 1
    L.thread_i[TI_N] = n
    t = L.thread_i[TI_STEPS] + 1
    L.thread_i[TI_STEPS] = t
    T = atomic_add(L.counters, C_T, 1) + 1
    L.thread_i[TI_EPISODE_STEPS] += 1
    L.thread_f[TF_EPISODE_RETURN] += reward
    if episode_over:
        k = L.thread_i[TI_EPISODES]
        row = k % L.episode_log.shape[0]
        L.episode_log[row, EL_T] = T
        L.episode_log[row, EL_RETURN] = L.thread_f[TF_EPISODE_RETURN]
        L.episode_log[row, EL_LENGTH] = L.thread_i[TI_EPISODE_STEPS]
        L.thread_i[TI_EPISODES] = k + 1
        L.thread_i[TI_EPISODE_STEPS] = 0
        L.thread_f[TF_EPISODE_RETURN] = 0.0
    L.thread_i[TI_EPISODE_OVER] = 1 if episode_over else 0

    algo = L.config_i[CI_ALGO]
    t_max = L.config_i[CI_T_MAX]
    if terminal:
        L.thread_i[TI_SEGMENT_END] = SEG_TERMINAL
    elif truncated or episode_over:
        L.thread_i[TI_SEGMENT_END] = SEG_TRUNCATED
    elif algo == ONESTEP_Q or algo == SARSA:
        # Algorithm 1: "if t mod I_AsyncUpdate == 0 or s is terminal" (t is the thread's own counter).
        if t % t_max == 0 or n >= L.obs.shape[0] - 1:
            L.thread_i[TI_SEGMENT_END] = SEG_CUT
    elif n == t_max:
        # Algorithms S2, S3: "until terminal s_t or t − t_start == t_max".
        L.thread_i[TI_SEGMENT_END] = SEG_CUT
    if L.thread_i[TI_SEGMENT_END] == SEG_NONE and (T >= L.config_i[CI_BUDGET] or L.counters[C_STOP] != 0):
        L.thread_i[TI_SEGMENT_END] = SEG_CUT
    return L.thread_i[TI_SEGMENT_END] != SEG_NONE


@njit(nogil=True, cache=True, inline="always")
def apply_gradients(L):
    """Clip dθ by global norm and apply the optimiser to the shared θ; in the same pass over the
    parameters, θ′ ← θ (the next segment's copy) and dθ ← 0. Returns a status.

    Memory traffic per update: one read of dθ for the norm, then one fused sweep that reads dθ,
    g and θ and writes g, θ, θ′ and dθ; before the fusion, the zeroing of dθ and begin_segment's
    copy θ′ ← θ were two more sweeps over the whole array."""
    norm = global_norm(L.grads)
    L.thread_f[TF_GRAD_NORM] = norm
    if not np.isfinite(norm):
        return DIVERGED
    scale = clip_scale(norm, L.config_f[CF_CLIP_NORM])
    T = L.counters[C_T]
    lr = learning_rate_at(T, L.config_f[CF_LR], L.config_i[CI_BUDGET], L.config_i[CI_ANNEAL_LR])
    L.thread_f[TF_LR] = lr
    opt = L.config_i[CI_OPTIMIZER]
    alpha = L.config_f[CF_RMS_ALPHA]
    if opt == SHARED_RMSPROP:
        rmsprop_update(L.theta, L.grads, L.opt_shared, lr, alpha, L.config_f[CF_RMS_EPS], scale, L.theta_local)
    elif opt == MOMENTUM:
        momentum_update(L.theta, L.grads, L.opt_private, lr, alpha, scale, L.theta_local)
    else:
        rmsprop_update(L.theta, L.grads, L.opt_private, lr, alpha, L.config_f[CF_RMS_EPS], scale, L.theta_local)
    L.thread_i[TI_LOCAL_FRESH] = 1
    L.thread_i[TI_UPDATES] += 1
    return OK


@njit(nogil=True, cache=True, inline="always")
def maybe_refresh_target(L):
    """``if T mod I_target == 0: θ⁻ ← θ``, done by the one thread that claims the crossing.

    Threads add several steps between checks, so "T is a multiple" becomes "T has passed the
    next refresh step"; a compare-and-swap on that step makes exactly one thread copy.
    """
    interval = L.config_i[CI_TARGET_INTERVAL]
    if interval <= 0:
        return
    nxt = L.counters[C_TARGET_NEXT]
    if L.counters[C_T] >= nxt:
        if atomic_cas(L.counters, C_TARGET_NEXT, nxt, nxt + interval) == nxt:
            L.theta_target[:] = L.theta
            atomic_add(L.counters, C_TARGET_UPDATES, 1)


@njit(nogil=True, cache=True, inline="always")
def end_segment(L):
    """Targets → loss gradient → backprop → clip → optimiser → θ⁻ refresh → next segment's s_0.

    Returns OK, DIVERGED (the loss or gradient is not finite: the run must stop), STOPPED (the
    stop flag is up) or BUDGET_DONE (T reached T_max).
    """
    n = L.thread_i[TI_N]
    if n > 0:
        act_size = L.config_i[CI_ACTIVATION_SIZE]
        L.delta[0:n, 0:act_size] = 0.0
        algo = L.config_i[CI_ALGO]
        if algo == A3C:
            loss = a3c.segment_gradient(L, n)
        elif algo == NSTEP_Q:
            loss = nstep_q.segment_gradient(L, n)
        else:
            loss = onestep.segment_gradient(L, n, algo == SARSA)
        status = OK
        if not np.isfinite(loss):
            status = DIVERGED
        else:
            status = apply_gradients(L)
        if status != OK:
            L.counters[C_STATUS] = status
            L.counters[C_STOP] = 1
            return status
        if algo != A3C:
            maybe_refresh_target(L)
        if L.thread_i[TI_EPISODE_OVER] == 0:
            L.obs[0, :] = L.obs[n, :]
            carry_state(L.table, L.ws, n, 0)    # recurrent networks: (h, c) after the last step
        else:
            L.thread_i[TI_PENDING_ACTION] = -1
            reset_state(L.table, L.ws, 0)       # recurrent networks: a new episode starts from h = c = 0
    L.thread_i[TI_N] = 0
    if L.counters[C_STOP] != 0:
        return STOPPED
    if L.counters[C_T] >= L.counters[C_PAUSE_AT]:
        # A pause falls on a segment boundary, where the run's whole state is in the arrays, so a
        # run paused here and resumed from a checkpoint continues exactly as if never paused.
        return STOPPED
    if L.counters[C_T] >= L.config_i[CI_BUDGET]:
        return BUDGET_DONE
    return OK
