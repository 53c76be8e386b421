"""Each algorithm's segment update against a naive NumPy reimplementation of the paper's pseudo-code.

A learner acts for one segment on made-up observations and rewards; the reference recomputes,
with plain NumPy (its own forward pass, its own backprop, its own RMSProp), what the paper says
the update must be, and the new shared θ must match.
"""

import numpy as np
import pytest

from numba_a3c.algorithms.learner import act, begin_segment, end_segment, observe
from numba_a3c.algorithms.state import C_T, C_TARGET_UPDATES, TI_PENDING_ACTION
from numba_a3c.config import TrainConfig
from numba_a3c.nn.network import Network, mlp_spec
from numba_a3c.workers import make_learner, new_shared_state

OBS, A, HIDDEN = 3, 3, (8, 6)


# ----------------------------------------------------------------------------- NumPy reference
def np_forward(net, theta, x):
    """Activations of a relu MLP: list of (input, output) per layer, and the head outputs."""
    v = net.views(theta.astype(np.float64))
    h = x.astype(np.float64)
    cache = []
    for i in range(1, len(HIDDEN) + 1):
        z = h @ v[f"fc{i}/W"] + v[f"fc{i}/b"]
        cache.append((h, z))
        h = np.maximum(z, 0.0)
    heads = {}
    for name in ("q", "pi", "v"):
        if f"{name}/W" in v:
            heads[name] = h @ v[f"{name}/W"] + v[f"{name}/b"]
    return cache, h, heads


def np_backward(net, theta, x, d_heads):
    """dθ for a batch x given ∂L/∂(head outputs), by the textbook backprop of a relu MLP."""
    v = net.views(theta.astype(np.float64))
    cache, h, _ = np_forward(net, theta, x)
    grads = {}
    dh = np.zeros_like(h)
    for name, d in d_heads.items():
        grads[f"{name}/W"] = h.T @ d
        grads[f"{name}/b"] = d.sum(0)
        dh += d @ v[f"{name}/W"].T
    for i in range(len(HIDDEN), 0, -1):
        inp, z = cache[i - 1]
        dz = dh * (z > 0)
        grads[f"fc{i}/W"] = inp.T @ dz
        grads[f"fc{i}/b"] = dz.sum(0)
        dh = dz @ v[f"fc{i}/W"].T
    flat = np.zeros(net.n_params)
    for p in net.params:
        flat[p.offset:p.offset + p.size] = grads[p.name].reshape(-1)
    return flat


def np_rmsprop(theta, g, d, lr, alpha=0.99, eps=0.1):
    g = alpha * g + (1 - alpha) * d * d
    return theta - lr * d / np.sqrt(g + eps), g


# ----------------------------------------------------------------------------- harness
def make(algo, t_max=4, **kw):
    cfg = TrainConfig(algo=algo, threads=1, steps=10_000, t_max=t_max, lr=0.01, anneal_lr=False, clip_norm=0.0,
                      gamma=0.9, beta=0.05, eps_anneal_steps=0, target_interval=1_000_000, **kw)
    heads = "actor_critic" if algo == "a3c" else "q"
    net = Network(mlp_spec(OBS, A, HIDDEN, "relu", heads))
    shared = new_shared_state(cfg, net)
    shared.thread_f[0, 0] = 0.3  # final ε: exploration with the thread's RNG, deterministic
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
    # Reference, Algorithm S3: R ← 0 or V(s_t; θ′); R ← r_i + γR; A = R − V(s_i); policy + entropy + ½A².
    _, _, heads = np_forward(net, theta0, states)
    logits, values = heads["pi"], heads["v"][:, 0]
    R = 0.0 if terminal else values[4]
    returns = np.zeros(4)
    for i in range(3, -1, -1):
        R = REWARDS[i] + 0.9 * R
        returns[i] = R
    z = logits[:4]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    logp = np.log(p)
    H = -(p * logp).sum(1)
    adv = returns - values[:4]
    onehot = np.eye(A)[actions]
    dz = adv[:, None] * (p - onehot) + cfg.beta * p * (logp + H[:, None])
    dv = (values[:4] - returns)[:, None]
    d = np_backward(net, theta0, states[:4], {"pi": dz, "v": dv})
    expected, _ = np_rmsprop(theta0.astype(np.float64), np.zeros(net.n_params), d, cfg.lr)
    np.testing.assert_allclose(shared.theta, expected, rtol=2e-5, atol=2e-6)
    assert shared.counters[C_T] == 4


@pytest.mark.parametrize("terminal", [False, True])
def test_nstep_q_segment_matches_reference(terminal):
    cfg, net, shared, L = make("nstep-q")
    theta0 = shared.theta.copy()
    target = shared.theta_target.copy()
    states, actions = play_segment(L, 4, REWARDS, terminal)
    end_segment(L)
    # Reference, Algorithm S2: R ← 0 or max_a Q(s_t, a; θ⁻); R ← r_i + γR; dθ += ∂(R − Q(s_i, a_i; θ′))².
    _, _, heads_target = np_forward(net, target, states)
    R = 0.0 if terminal else heads_target["q"][4].max()
    returns = np.zeros(4)
    for i in range(3, -1, -1):
        R = REWARDS[i] + 0.9 * R
        returns[i] = R
    _, _, heads = np_forward(net, theta0, states[:4])
    q = heads["q"]
    dq = np.zeros_like(q)
    dq[np.arange(4), actions] = -2.0 * (returns - q[np.arange(4), actions])
    d = np_backward(net, theta0, states[:4], {"q": dq})
    expected, _ = np_rmsprop(theta0.astype(np.float64), np.zeros(net.n_params), d, cfg.lr)
    np.testing.assert_allclose(shared.theta, expected, rtol=2e-5, atol=2e-6)


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
    _, _, heads_target = np_forward(net, target, states)
    qt = heads_target["q"]
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
    _, _, heads = np_forward(net, theta0, states[:4])
    q = heads["q"]
    dq = np.zeros_like(q)
    dq[np.arange(4), actions] = -2.0 * (y - q[np.arange(4), actions])
    d = np_backward(net, theta0, states[:4], {"q": dq})
    expected, _ = np_rmsprop(theta0.astype(np.float64), np.zeros(net.n_params), d, cfg.lr)
    np.testing.assert_allclose(shared.theta, expected, rtol=2e-5, atol=2e-6)


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
    L.config_i[2] = 8  # CI_TARGET_INTERVAL
    shared.counters[3] = 8  # C_TARGET_NEXT
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
        n = int(L.thread_i[4])
        L.obs[n + 1] = rng.normal(size=OBS).astype(np.float32)
        if observe(L, 0.0, False, False, False):
            ends.append(t)
            end_segment(L)
            begin_segment(L)
    assert ends == [3, 6]
