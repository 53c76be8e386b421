"""Targets and returns (numba_a3c.targets) against hand-computed cases and a naive reference loop,
and, inside a learner, terminal versus time-limit bootstrapping.

The arithmetic of every hand-computed case is written out next to it, so a failure can be checked
with pencil and paper.
"""

import numpy as np
import pytest

from numba_a3c.algorithms.learner import act, begin_segment, end_segment, observe
from numba_a3c.algorithms.state import (
    SEG_CUT,
    SEG_TERMINAL,
    SEG_TRUNCATED,
    TF_EPS_FINAL,
    TI_EPISODE_OVER,
    TI_EPISODES,
    TI_SEGMENT_END,
)
from numba_a3c.config import TrainConfig
from numba_a3c.nn.network import Network, mlp_spec
from numba_a3c.targets import n_step_returns, q_learning_target, sarsa_target
from numba_a3c.workers import make_learner, new_shared_state

Q = np.array([0.5, 2.0, -1.0], np.float32)  # Q(s′, ·; θ⁻) for three actions; the max is 2.0 (action 1)


# ----------------------------------------------------------------------------- one-step targets
def test_q_learning_target_hand_computed():
    # y = r + γ max_a′ Q(s′, a′) = 1 + 0.9 · 2.0 = 2.8
    assert q_learning_target(1.0, 0.9, Q) == pytest.approx(2.8)
    # all-negative values: max is −1 (not 0): y = 0.5 + 0.5 · (−1) = 0.0
    assert q_learning_target(0.5, 0.5, np.array([-3.0, -1.0, -2.0], np.float32)) == pytest.approx(0.0)
    # the max is found wherever it is: last entry. y = −1 + 0.99 · 4 = 2.96
    assert q_learning_target(-1.0, 0.99, np.array([1.0, 2.0, 4.0], np.float32)) == pytest.approx(2.96)


def test_sarsa_target_hand_computed():
    # y = r + γ Q(s′, a′) with the action actually taken: a′ = 2 → 1 + 0.9 · (−1) = 0.1
    assert sarsa_target(1.0, 0.9, Q, 2) == pytest.approx(0.1)
    # a′ = 0 → 1 + 0.9 · 0.5 = 1.45
    assert sarsa_target(1.0, 0.9, Q, 0) == pytest.approx(1.45)


def test_sarsa_equals_q_learning_when_the_next_action_is_greedy():
    for a in range(3):
        expected = q_learning_target(0.3, 0.9, Q) if a == int(np.argmax(Q)) else None
        if expected is not None:
            assert sarsa_target(0.3, 0.9, Q, a) == pytest.approx(expected)
        else:
            assert sarsa_target(0.3, 0.9, Q, a) < q_learning_target(0.3, 0.9, Q)


def test_terminal_target_is_the_reward_alone():
    # discount_t = 0 at a terminal s′: y = r whatever Q(s′) says, for both methods.
    huge = np.array([1e6, -1e6, 3e5], np.float32)
    assert q_learning_target(-1.0, 0.0, huge) == -1.0
    for a in range(3):
        assert sarsa_target(-1.0, 0.0, huge, a) == -1.0


# ----------------------------------------------------------------------------- n-step returns
def returns_of(rewards, gamma, bootstrap, n=None, size=None):
    rewards = np.asarray(rewards, np.float32)
    n = len(rewards) if n is None else n
    out = np.full(size or len(rewards), -99.0, np.float32)
    n_step_returns(rewards, gamma, bootstrap, n, out)
    return out


def test_n_step_returns_hand_computed_bootstrapped():
    # rewards (1, 0, 2), γ = 0.5, bootstrap R = 4 (V(s_3) or max_a Q(s_3, a; θ⁻)):
    #   i = 2: R = 2 + 0.5 · 4 = 4
    #   i = 1: R = 0 + 0.5 · 4 = 2
    #   i = 0: R = 1 + 0.5 · 2 = 2
    np.testing.assert_allclose(returns_of([1, 0, 2], 0.5, 4.0), [2.0, 2.0, 4.0])


def test_n_step_returns_hand_computed_terminal():
    # the same segment ending in a terminal state: R starts at 0
    #   i = 2: R = 2;  i = 1: R = 0 + 0.5 · 2 = 1;  i = 0: R = 1 + 0.5 · 1 = 1.5
    np.testing.assert_allclose(returns_of([1, 0, 2], 0.5, 0.0), [1.5, 1.0, 2.0])


def test_n_step_returns_with_gamma_one_are_suffix_sums():
    # γ = 1: each return is the sum of the rewards from i on plus the bootstrap: (−1+2+3+10, 2+3+10, 3+10)
    np.testing.assert_allclose(returns_of([-1, 2, 3], 1.0, 10.0), [14.0, 15.0, 13.0])


def test_n_step_returns_use_only_the_first_n_entries():
    # The buffers hold t_max entries; a segment cut short by a terminal state uses the first n.
    out = returns_of([1, 1, 5, 7], 0.9, 0.0, n=2, size=4)
    # i = 1: R = 1;  i = 0: R = 1 + 0.9 · 1 = 1.9; entries 2, 3 untouched
    np.testing.assert_allclose(out, [1.9, 1.0, -99.0, -99.0])


def test_one_step_return_equals_the_one_step_target():
    # Identity: an n-step return with n = 1 bootstrapped from max_a Q(s′, a; θ⁻) is the Q-learning target.
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = float(rng.normal())
        gamma = float(rng.uniform(0.5, 1.0))
        q = rng.normal(size=4).astype(np.float32)
        out = returns_of([r], gamma, float(q.max()))
        assert out[0] == pytest.approx(q_learning_target(r, gamma, q), rel=1e-6, abs=1e-6)


def naive_n_step_returns(rewards, gamma, bootstrap):
    """Forward view written out: R_i = Σ_{k=i}^{n−1} γ^{k−i} r_k + γ^{n−i} · bootstrap."""
    n = len(rewards)
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for k in range(i, n):
            total += gamma ** (k - i) * rewards[k]
        out[i] = total + gamma ** (n - i) * bootstrap
    return out


@pytest.mark.parametrize("seed", range(5))
def test_n_step_returns_match_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 21))
    rewards = rng.normal(size=n).astype(np.float32)
    gamma = float(rng.uniform(0.8, 1.0))
    bootstrap = float(rng.normal(scale=5.0))
    expected = naive_n_step_returns(rewards.astype(np.float64), gamma, bootstrap)
    np.testing.assert_allclose(returns_of(rewards, gamma, bootstrap), expected, rtol=1e-5, atol=1e-5)


def test_n_step_returns_equal_chained_one_step_targets():
    # Identity: R_i = r_i + γ R_{i+1}, i.e. each return is a one-step target whose "next value" is
    # the following return (q_t = [R_{i+1}]).
    rewards = np.array([0.5, -1.0, 2.0, 0.0, 1.0], np.float32)
    out = returns_of(rewards, 0.95, 3.0)
    nxt = np.append(out[1:], 3.0)
    for i in range(5):
        assert out[i] == pytest.approx(q_learning_target(float(rewards[i]), 0.95,
                                                         np.array([nxt[i]], np.float32)), rel=1e-6)


# ----------------------------------------------------------------------------- inside a learner
OBS, A = 3, 3
SEG_REWARDS = np.array([1.0, -0.5, 0.25], np.float32)


def segment_targets(algo, end):
    """Play three steps on fixed random observations and end the segment by ``end``:
    "cut" (t_max = 3 reached), "truncated" (a time limit) or "terminal". Returns (targets, learner)."""
    cfg = TrainConfig(algo=algo, threads=1, steps=10_000, t_max=3, lr=0.0, anneal_lr=False, clip_norm=0.0,
                      gamma=0.9, eps_anneal_steps=0, target_interval=1_000_000)
    heads = "actor_critic" if algo == "a3c" else "q"
    net = Network(mlp_spec(OBS, A, (8,), "relu", heads))
    shared = new_shared_state(cfg, net)
    shared.thread_f[0, TF_EPS_FINAL] = 0.3
    # θ⁻ differs from θ, so the bootstrap value is not accidentally the same under both.
    shared.theta_target[:] = shared.theta + np.random.default_rng(1).normal(0, 0.3, net.n_params).astype(np.float32)
    L = make_learner(shared, net, 0)
    rng = np.random.default_rng(7)
    L.obs[0] = rng.normal(size=OBS).astype(np.float32)
    begin_segment(L)
    for i in range(3):
        act(L)
        L.obs[i + 1] = rng.normal(size=OBS).astype(np.float32)
        last = i == 2
        terminal = last and end == "terminal"
        truncated = last and end == "truncated"
        assert observe(L, float(SEG_REWARDS[i]), terminal, truncated, terminal or truncated) == last
    seg_end = int(L.thread_i[TI_SEGMENT_END])
    end_segment(L)
    return L.returns[:3].astype(np.float64).copy(), L, seg_end


@pytest.mark.parametrize("algo", ["a3c", "nstep-q", "onestep-q", "sarsa"])
def test_time_limit_truncation_bootstraps_and_termination_does_not(algo):
    cut, _, end_cut = segment_targets(algo, "cut")
    trunc, L_trunc, end_trunc = segment_targets(algo, "truncated")
    term, L_term, end_term = segment_targets(algo, "terminal")
    assert (end_cut, end_trunc, end_term) == (SEG_CUT, SEG_TRUNCATED, SEG_TERMINAL)
    # A truncated episode ends (it is logged and the environment must be reset) ...
    assert L_trunc.thread_i[TI_EPISODES] == 1 and L_trunc.thread_i[TI_EPISODE_OVER] == 1
    assert L_term.thread_i[TI_EPISODES] == 1
    # ... but its targets bootstrap exactly like a segment cut at t_max.
    np.testing.assert_array_equal(trunc, cut)
    r = SEG_REWARDS.astype(np.float64)
    if algo in ("a3c", "nstep-q"):
        # Terminal: R = 0 → (r0 + 0.9 r1 + 0.81 r2, r1 + 0.9 r2, r2) = (0.7525, −0.275, 0.25)
        np.testing.assert_allclose(term, [0.7525, -0.275, 0.25], rtol=1e-6)
        np.testing.assert_allclose(term, naive_n_step_returns(r, 0.9, 0.0), rtol=1e-6)
        # Bootstrapped: the difference from the terminal returns is γ^{n−i} · bootstrap.
        boot = (trunc[2] - term[2]) / 0.9
        assert abs(boot) > 1e-3
        np.testing.assert_allclose(trunc - term, [0.9 ** 3 * boot, 0.9 ** 2 * boot, 0.9 * boot], rtol=1e-5)
    else:
        # One-step targets: only the last transition reaches the terminal state; y_2 = r_2 there.
        assert term[2] == pytest.approx(0.25)
        assert trunc[2] != pytest.approx(0.25)
        np.testing.assert_array_equal(term[:2], trunc[:2])
