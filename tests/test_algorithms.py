"""Each algorithm's segment update against a naive NumPy reimplementation of the paper's pseudo-code.

A learner acts for one segment on made-up observations and rewards; the reference recomputes,
with plain NumPy (its own forward pass, its own backprop, its own RMSProp), what the paper says
the update must be, and the new shared θ must match.
"""

import numpy as np
import pytest

from numba_a3c import a3c_numpy as ref
from numba_a3c.algorithms import a3c
from numba_a3c.algorithms.learner import act, begin_segment, end_segment, observe
from numba_a3c.algorithms.state import (
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    CF_VALUE_WEIGHT,
    CI_TARGET_INTERVAL,
    TF_EPS_FINAL,
    TI_LOCAL_FRESH,
    TI_N,
    TI_PENDING_ACTION,
)
from numba_a3c.config import TrainConfig
from numba_a3c.nn.network import Network, mlp_spec
from numba_a3c.workers import make_learner, new_shared_state

OBS, A, HIDDEN = 3, 3, (8, 6)


# ----------------------------------------------------------------------------- NumPy reference
# A3C's is the single file numba_a3c/a3c_numpy.py; the Q methods reuse its body and backprop.
def as_params(net, theta):
    """θ (the package's flat array) as the reference's dict of named float64 arrays."""
    return {name: view.astype(np.float64) for name, view in net.views(theta).items()}


def as_flat(net, params):
    flat = np.zeros(net.n_params)
    for p in net.params:
        flat[p.offset:p.offset + p.size] = params[p.name].reshape(-1)
    return flat


def np_q_values(net, theta, x):
    """Q(s, ·) of a relu MLP with a linear Q head, for a batch x."""
    params = as_params(net, theta)
    h, _ = ref.body_forward(params, x.astype(np.float64))
    return h @ params["q/W"] + params["q/b"]


def np_q_update(net, theta, x, dq, lr):
    """θ after one shared-RMSProp step (g from 0) on the gradient whose value at the Q head is dq."""
    params = as_params(net, theta)
    h, tape = ref.body_forward(params, x.astype(np.float64))
    grads = {}
    ref.body_backward(params, tape, ref.linear_backward(params, "q", h, dq, grads), grads)
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    return as_flat(net, ref.shared_rmsprop(params, zeros, grads, lr)[0])


def softmax_of(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- harness
def make(algo, t_max=4, **kw):
    cfg = TrainConfig(algo=algo, threads=1, steps=10_000, t_max=t_max, lr=0.01, anneal_lr=False, clip_norm=0.0,
                      gamma=0.9, beta=0.05, eps_anneal_steps=0, target_interval=1_000_000, **kw)
    heads = "actor_critic" if algo == "a3c" else "q"
    net = Network(mlp_spec(OBS, A, HIDDEN, "relu", heads))
    shared = new_shared_state(cfg, net)
    shared.thread_f[0, TF_EPS_FINAL] = 0.3  # final ε: exploration with the thread's RNG, deterministic
    # A target network different from θ, so using the wrong one would show.
    shared.theta_target[:] = shared.theta + np.random.default_rng(5).normal(0, 0.05, net.n_params).astype(np.float32)
    return cfg, net, shared, make_learner(shared, net, 0)


def play_segment(L, n, rewards, terminal_at_end=False, seed=0):
    """Act for n steps on random observations; returns (states s_0..s_n, actions)."""
    rng = np.random.default_rng(seed)
    L.obs[0] = rng.normal(size=OBS).astype(np.float32)
    begin_segment(L)
    for i in range(n):
        act(L)
        L.obs[i + 1] = rng.normal(size=OBS).astype(np.float32)
        last = i == n - 1
        over = observe(L, rewards[i], terminal_at_end and last, False, terminal_at_end and last)
        assert over == last, "the segment must end exactly after t_max steps or at the terminal state"
    return L.obs[: n + 1].copy(), L.actions[:n].copy()


REWARDS = np.array([1.0, -0.5, 0.25, 2.0], np.float32)


@pytest.mark.parametrize("terminal", [False, True])
def test_a3c_segment_matches_reference(terminal):
    cfg, net, shared, L = make("a3c")
    theta0 = shared.theta.copy()
    states, actions = play_segment(L, 4, REWARDS, terminal)
    end_segment(L)
    # Reference, Algorithm S3, in plain NumPy (numba_a3c/a3c_numpy.py): the same segment, the same update.
    params = as_params(net, theta0)
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    expected, _, _ = ref.segment_update(params, zeros, states.astype(np.float64), actions, REWARDS.astype(np.float64),
                                        terminal, gamma=cfg.gamma, beta=cfg.beta, lr=cfg.lr, clip_norm=0.0)
    np.testing.assert_allclose(shared.theta, as_flat(net, expected), rtol=2e-5, atol=2e-6)
    assert shared.counters[C_T] == 4


def test_value_weight_scales_the_value_term_and_nothing_else():
    """--value-weight c_v: dθ = g_π + c_v g_V and L = L_π − βH + c_v L_V, so both are affine in c_v;
    the policy head's gradient does not depend on it and the value head's is proportional to it."""
    cfg, net, shared, L = make("a3c")
    play_segment(L, 4, REWARDS)
    weights = (1.0, 0.5, 0.25)
    grads, losses = [], []
    for c_v in weights:
        L.config_f[CF_VALUE_WEIGHT] = c_v
        L.grads[:] = 0.0
        L.delta[:] = 0.0                                 # as end_segment does before segment_gradient
        losses.append(a3c.segment_gradient(L, 4))
        grads.append(net.views(L.grads.astype(np.float64).copy()))
    assert cfg.value_weight == 1.0                       # the paper's loss unless asked otherwise
    g_v = {k: (grads[0][k] - grads[1][k]) / 0.5 for k in grads[0]}      # the value term's gradient
    assert np.abs(g_v["fc1/W"]).max() > 1e-3             # the shared body gets some of it
    for j, c_v in enumerate(weights):
        for k in grads[0]:
            np.testing.assert_allclose(grads[j][k], grads[0][k] - (1.0 - c_v) * g_v[k], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(grads[j]["pi/W"], grads[0]["pi/W"])
        np.testing.assert_allclose(grads[j]["v/W"], c_v * grads[0]["v/W"], rtol=1e-6, atol=1e-7)
    value_loss = (losses[0] - losses[1]) / 0.5
    assert value_loss > 0
    np.testing.assert_allclose(losses[2], losses[0] - 0.75 * value_loss, rtol=1e-5)


@pytest.mark.parametrize("normalize_advantage", [False, True])
def test_normalize_value_keeps_v_and_learns_normalised_returns(normalize_advantage):
    """--normalize-value (PopArt): V = σ v̂ + μ. The segment's raw returns (bootstrapped from the raw
    V) move the moving statistics (μ, σ) → (μ′, σ′), hand-computed here; the value head is rescaled
    so that V is unchanged on any input; the value's gradient is that of ½(v̂ − R̂)² on the rescaled
    network with the returns in the new units, R̂ = (R − μ′)/σ′; the policy's reads the raw
    advantage A = R − V, or with --normalize-advantage A/σ′."""
    cfg, net, shared, L = make("a3c", normalize_value=True, value_rate=0.25, normalize_advantage=normalize_advantage)
    shared.value_stats[:3] = [10.0, 2.0, 13.0]                  # 10 returns seen: μ = 2, σ = √(13 − 2²) = 3
    theta0 = shared.theta.copy()
    states, actions = play_segment(L, 4, REWARDS)
    L.grads[:] = 0.0
    L.delta[:] = 0.0
    a3c.segment_gradient(L, 4)

    p0 = as_params(net, theta0)
    V = 3.0 * ref.forward(p0, states)[1] + 2.0
    R = ref.n_step_returns(REWARDS.astype(np.float64), cfg.gamma, V[4])    # bootstrapped from the raw V(s_4)
    count, mean, second = 10.0, 2.0, 13.0
    for r in R:                                                  # step max(1/count, rate): 0.25 here
        count += 1.0
        mean += 0.25 * (r - mean)
        second += 0.25 * (r * r - second)
    mu2, sigma2 = mean, np.sqrt(second - mean * mean)
    np.testing.assert_allclose(shared.value_stats[:3], [14.0, mean, second], rtol=1e-6)

    p1 = as_params(net, shared.theta)
    x = np.vstack([states, np.random.default_rng(3).normal(size=(6, OBS))])
    np.testing.assert_allclose(sigma2 * ref.forward(p1, x)[1] + mu2, 3.0 * ref.forward(p0, x)[1] + 2.0,
                               rtol=1e-5, atol=1e-5)
    for k in p0:
        if not k.startswith("v/"):
            np.testing.assert_array_equal(p1[k], p0[k])          # only the value head is rescaled
    assert not np.allclose(p1["v/W"], p0["v/W"])

    logits, v1, h, tape = ref.forward(p1, states)
    _, d_logits, d_values = ref.head_gradients(logits[:4], v1[:4], actions, (R - mu2) / sigma2, cfg.beta)
    if not normalize_advantage:      # the policy's term with A = σ′ Â, the entropy's unchanged
        raw = (R - V[:4])[:, None]
        np.testing.assert_allclose(sigma2 * ((R - mu2) / sigma2 - v1[:4])[:, None], raw, rtol=1e-4, atol=1e-4)
        d_logits = d_logits + (raw - (raw / sigma2)) * (softmax_of(logits[:4]) - np.eye(A)[actions])
    expected = {}
    dh = ref.linear_backward(p1, "pi", h[:4], d_logits, expected)
    dh = dh + ref.linear_backward(p1, "v", h[:4], d_values[:, None], expected)
    ref.body_backward(p1, [(h_in[:4], z[:4]) for h_in, z in tape], dh, expected)
    got = net.views(L.grads.astype(np.float64))
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("terminal", [False, True])
def test_nstep_q_segment_matches_reference(terminal):
    cfg, net, shared, L = make("nstep-q")
    theta0 = shared.theta.copy()
    target = shared.theta_target.copy()
    states, actions = play_segment(L, 4, REWARDS, terminal)
    end_segment(L)
    # Reference, Algorithm S2: R ← 0 or max_a Q(s_t, a; θ⁻); R ← r_i + γR; dθ += ∂(R − Q(s_i, a_i; θ′))².
    R = 0.0 if terminal else np_q_values(net, target, states)[4].max()
    returns = np.zeros(4)
    for i in range(3, -1, -1):
        R = REWARDS[i] + 0.9 * R
        returns[i] = R
    q = np_q_values(net, theta0, states[:4])
    dq = np.zeros_like(q)
    dq[np.arange(4), actions] = -2.0 * (returns - q[np.arange(4), actions])
    np.testing.assert_allclose(shared.theta, np_q_update(net, theta0, states[:4], dq, cfg.lr), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("algo", ["onestep-q", "sarsa"])
@pytest.mark.parametrize("terminal", [False, True])
def test_onestep_segment_matches_reference(algo, terminal):
    cfg, net, shared, L = make(algo)
    theta0 = shared.theta.copy()
    target = shared.theta_target.copy()
    states, actions = play_segment(L, 4, REWARDS, terminal)
    end_segment(L)
    # Reference, Algorithm 1: y_i = r_i (terminal) or r_i + γ max_a′ Q(s_{i+1}, a′; θ⁻)
    # (Sarsa: r_i + γ Q(s_{i+1}, a_{i+1}; θ⁻), with a_4 the action chosen for the next step).
    qt = np_q_values(net, target, states)
    pending = int(L.thread_i[TI_PENDING_ACTION])
    if algo == "sarsa" and not terminal:
        assert 0 <= pending < A, "Sarsa must have chosen a′ for s_4 before its update"
    next_actions = np.append(actions[1:], pending)
    y = np.zeros(4)
    for i in range(4):
        if terminal and i == 3:
            y[i] = REWARDS[i]
        elif algo == "sarsa":
            y[i] = REWARDS[i] + 0.9 * qt[i + 1, next_actions[i]]
        else:
            y[i] = REWARDS[i] + 0.9 * qt[i + 1].max()
    q = np_q_values(net, theta0, states[:4])
    dq = np.zeros_like(q)
    dq[np.arange(4), actions] = -2.0 * (y - q[np.arange(4), actions])
    np.testing.assert_allclose(shared.theta, np_q_update(net, theta0, states[:4], dq, cfg.lr), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("algo", ["onestep-q", "sarsa", "nstep-q", "a3c"])
def test_gradient_is_taken_at_the_parameters_that_acted(algo):
    """Another thread's update lands between acting and the update (Hogwild): the segment's
    gradient must still be the one at θ′, the parameters its forward passes used, and it is
    applied to the shared θ as that is now."""
    cfg, net, shared, L = make(algo)
    _, _, reference, reference_L = make(algo)     # the same learner, left undisturbed
    play_segment(L, 4, REWARDS, False)
    play_segment(reference_L, 4, REWARDS, False)
    np.testing.assert_array_equal(L.actions[:4], reference_L.actions[:4])
    other = np.random.default_rng(5).normal(scale=0.05, size=net.n_params).astype(np.float32)
    shared.theta += other                          # "another thread" writes θ meanwhile
    end_segment(L)
    end_segment(reference_L)
    # The same dθ, applied to θ + other: first RMSProp step, θ ← θ − lr·dθ/√((1−α)dθ² + ε).
    np.testing.assert_allclose(shared.opt_shared, reference.opt_shared, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(shared.theta - other, reference.theta, rtol=1e-5, atol=1e-6)


def test_sarsa_takes_the_action_it_bootstrapped_from():
    cfg, net, shared, L = make("sarsa")
    play_segment(L, 4, REWARDS, False)
    end_segment(L)
    pending = int(L.thread_i[TI_PENDING_ACTION])
    begin_segment(L)
    assert act(L) == pending
    assert L.thread_i[TI_PENDING_ACTION] == -1


def test_target_network_refreshed_every_interval():
    cfg, net, shared, L = make("nstep-q")
    L.config_i[CI_TARGET_INTERVAL] = 8
    shared.counters[C_TARGET_NEXT] = 8
    for seg in range(3):
        play_segment(L, 4, REWARDS, False, seed=seg)
        end_segment(L)
        if seg == 1:
            # T = 8 reached at the end of the second segment: θ⁻ ← θ exactly then.
            np.testing.assert_array_equal(shared.theta_target, shared.theta)
    assert shared.counters[C_TARGET_UPDATES] == 1


def test_one_step_updates_every_I_async_local_steps():
    cfg, net, shared, L = make("onestep-q", t_max=3)
    rng = np.random.default_rng(0)
    L.obs[0] = rng.normal(size=OBS).astype(np.float32)
    begin_segment(L)
    ends = []
    for t in range(1, 7):
        act(L)
        n = int(L.thread_i[TI_N])
        L.obs[n + 1] = rng.normal(size=OBS).astype(np.float32)
        if observe(L, 0.0, False, False, False):
            ends.append(t)
            end_segment(L)
            begin_segment(L)
    assert ends == [3, 6]


def test_reference_agent_runs_its_loop_on_cartpole():
    """The single-file reference's actor-learner loop (numba_a3c/a3c_numpy.py:train): episodes end
    and are reported, every update leaves θ finite, and θ moves."""
    import gymnasium

    episodes = []
    env = gymnasium.make("CartPole-v1")
    start = ref.init_params((4, 16), 2, np.random.default_rng(1))
    params = ref.train(env, steps=400, hidden=(16,), seed=1, lr=1e-2,
                       on_episode=lambda T, ret: episodes.append((T, ret)))
    env.close()
    assert episodes and all(ret >= 1 for _, ret in episodes) and episodes[-1][0] <= 400
    assert all(np.isfinite(v).all() for v in params.values())
    assert any(not np.allclose(params[k], start[k]) for k in params)


def test_each_segment_acts_on_the_shared_theta_as_it_was_after_the_last_update():
    """θ′ at the start of a segment is θ: copied by begin_segment for a thread's first segment, and
    written by the update's own pass after every update (another thread's later write is seen at
    the next copy). Resetting the learner (a resume) makes the first segment copy again."""
    cfg, net, shared, L = make("a3c")
    shared.theta[:] += 0.5                      # a change made before this thread's first segment
    play_segment(L, 4, REWARDS, False)
    np.testing.assert_array_equal(L.theta_local, shared.theta)
    end_segment(L)
    np.testing.assert_array_equal(L.theta_local, shared.theta)   # the update wrote θ′ too
    assert not L.grads.any()
    begin_segment(L)
    np.testing.assert_array_equal(L.theta_local, shared.theta)
    L.thread_i[TI_LOCAL_FRESH] = 1              # as a checkpoint saved right after an update holds it
    fresh = make_learner(shared, net, 0)
    assert fresh.thread_i[TI_LOCAL_FRESH] == 0
    begin_segment(fresh)
    np.testing.assert_array_equal(fresh.theta_local, shared.theta)
