"""A3C in plain NumPy, in one file, top to bottom: the reference the Numba kernels are tested against.

Algorithm S3 of Mnih et al. (2016), one actor-learner, float64, no Numba, no threads. Read it
next to docs/algorithms/a3c.md; ``tests/test_algorithms.py`` runs one segment through the real
kernels (``numba_a3c.algorithms``) and through :func:`segment_update` below, and the new θ must
agree. What the package adds on top is speed and asynchrony: N threads each running this loop on
one shared θ and one shared g without locks (``numba_a3c/workers.py``).

Per thread, the paper's pseudo-code, and the function below that does each line::

    repeat
        dθ ← 0;  θ′ ← θ;  t_start ← t;  get s_t                              train
        repeat  a_t ~ π(·|s_t; θ′);  take it, observe r_t, s_{t+1}           forward, softmax
                t ← t + 1;  T ← T + 1
        until s_t terminal or t − t_start == t_max                           train
        R ← 0 if s_t terminal else V(s_t; θ′)                                segment_gradient
        for i = t−1 down to t_start:  R ← r_i + γ R                          n_step_returns
            A ← R − V(s_i; θ′)
            dθ ← dθ + ∇θ′ log π(a_i|s_i; θ′) A + β ∇θ′ H(π(s_i; θ′))         head_gradients,
            dθ ← dθ + ∂(½ A²)/∂θ′                                            linear_/body_backward
        apply dθ to θ                                          clip_by_global_norm, shared_rmsprop
    until T > T_max

Parameters are a dict of named arrays, the names the package uses: ``fc1/W`` (in × out),
``fc1/b``, … for the ReLU body, ``pi/W``, ``pi/b`` for the policy logits, ``v/W``, ``v/b`` for
the value. Run ``python -m numba_a3c.a3c_numpy`` to train it on CartPole-v1 (slowly: one thread,
NumPy per step).
"""

import numpy as np


# ----------------------------------------------------------------------------- 1. the network
def init_params(sizes, n_actions, rng):
    """W ~ U(−1/√fan_in, 1/√fan_in), b = 0, ``pi/W`` × 0.01 (a near-uniform first policy), as the package does."""
    params = {}
    shapes = [(f"fc{i + 1}", sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
    shapes += [("pi", sizes[-1], n_actions), ("v", sizes[-1], 1)]
    for name, fan_in, fan_out in shapes:
        bound = 1.0 / np.sqrt(fan_in)
        params[name + "/W"] = rng.uniform(-bound, bound, (fan_in, fan_out)) * (0.01 if name == "pi" else 1.0)
        params[name + "/b"] = np.zeros(fan_out)
    return params


def body_forward(params, x):
    """The ReLU body on a batch x (B, in): z_l = h_{l−1} W_l + b_l, h_l = max(z_l, 0), h_0 = x.

    Returns the last h and the tape [(h_{l−1}, z_l), …] that :func:`body_backward` needs."""
    tape = []
    h = x
    layer = 1
    while f"fc{layer}/W" in params:
        z = h @ params[f"fc{layer}/W"] + params[f"fc{layer}/b"]
        tape.append((h, z))
        h = np.maximum(z, 0.0)
        layer += 1
    return h, tape


def forward(params, x):
    """(logits z (B, A), values V (B,), h, tape): the policy head z = h W_π + b_π, π = softmax(z);
    the value head V = h W_v + b_v. Both read the same body output h."""
    h, tape = body_forward(params, x)
    logits = h @ params["pi/W"] + params["pi/b"]
    values = (h @ params["v/W"] + params["v/b"])[:, 0]
    return logits, values, h, tape


def softmax(logits):
    """π_k = exp(z_k − max z) / Σ_j exp(z_j − max z), row by row."""
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- 2. the segment's targets
def n_step_returns(rewards, gamma, bootstrap):
    """R_n = bootstrap (0 if s_n is terminal, else V(s_n; θ′)); R_i = r_i + γ R_{i+1}, i = n−1 … 0."""
    returns = np.zeros(len(rewards))
    R = bootstrap
    for i in range(len(rewards) - 1, -1, -1):
        R = rewards[i] + gamma * R
        returns[i] = R
    return returns


# ----------------------------------------------------------------------------- 3. the loss and its gradient
def head_gradients(logits, values, actions, returns, beta):
    """The loss descended, summed over the segment, and its gradient at the heads.

    L = Σ_i [ −A_i log π(a_i|s_i) − β H_i + ½ (R_i − V_i)² ],  A_i = R_i − V_i (a constant in the
    policy term), H_i = −Σ_k π_ik log π_ik. Its gradients (derived in docs/backprop.md):

        ∂L/∂z_ik = A_i (π_ik − [k = a_i]) + β π_ik (log π_ik + H_i)        ∂L/∂V_i = V_i − R_i

    Returns (L, ∂L/∂z (n, A), ∂L/∂V (n,)).
    """
    n = len(actions)
    p = softmax(logits)
    logp = np.log(p)
    entropy = -(p * logp).sum(axis=1)
    advantage = returns - values
    onehot = np.eye(logits.shape[1])[actions]
    loss = (-advantage * logp[np.arange(n), actions] - beta * entropy + 0.5 * advantage ** 2).sum()
    d_logits = advantage[:, None] * (p - onehot) + beta * p * (logp + entropy[:, None])
    d_values = values - returns
    return loss, d_logits, d_values


# ----------------------------------------------------------------------------- 4. backpropagation
def linear_backward(params, name, h, d_out, grads):
    """For out = h W + b: ∂L/∂W = hᵀ d_out, ∂L/∂b = Σ_rows d_out (written into ``grads``); returns ∂L/∂h = d_out Wᵀ."""
    grads[name + "/W"] = h.T @ d_out
    grads[name + "/b"] = d_out.sum(axis=0)
    return d_out @ params[name + "/W"].T


def body_backward(params, tape, dh, grads):
    """Back through the ReLU body: ∂L/∂z_l = ∂L/∂h_l · [z_l > 0], then the layer's linear part."""
    for layer in range(len(tape), 0, -1):
        h_in, z = tape[layer - 1]
        dh = linear_backward(params, f"fc{layer}", h_in, dh * (z > 0), grads)
    return grads


def segment_gradient(params, states, actions, rewards, terminal, gamma, beta):
    """dθ′ of one segment: ``states`` holds s_0 … s_n (n + 1 rows), ``actions``/``rewards`` a_i, r_i.

    Returns (loss, grads: a dict shaped like ``params``)."""
    n = len(actions)
    logits, values, h, tape = forward(params, states)
    bootstrap = 0.0 if terminal else values[n]                 # R ← 0 or V(s_n; θ′)
    returns = n_step_returns(rewards, gamma, bootstrap)
    loss, d_logits, d_values = head_gradients(logits[:n], values[:n], actions, returns, beta)
    grads = {}
    dh = linear_backward(params, "pi", h[:n], d_logits, grads)
    dh = dh + linear_backward(params, "v", h[:n], d_values[:, None], grads)   # both heads feed h
    body_backward(params, [(h_in[:n], z[:n]) for h_in, z in tape], dh, grads)
    return loss, grads


# ----------------------------------------------------------------------------- 5. the update
def clip_by_global_norm(grads, max_norm):
    """dθ ← dθ · min(1, max_norm / ‖dθ‖₂), ‖·‖ over every parameter at once (max_norm 0: no clipping)."""
    norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    scale = min(1.0, max_norm / norm) if max_norm > 0 and norm > 0 else 1.0
    return {k: g * scale for k, g in grads.items()}


def shared_rmsprop(params, g, grads, lr, alpha=0.99, eps=0.1):
    """The paper's shared RMSProp, ε inside the square root, g starting at 0:

        g ← α g + (1 − α) dθ²        θ ← θ − η dθ / √(g + ε)

    Returns (new params, new g); in the package g is one array shared by every thread."""
    new_g = {k: alpha * g[k] + (1 - alpha) * grads[k] ** 2 for k in params}
    new_params = {k: params[k] - lr * grads[k] / np.sqrt(new_g[k] + eps) for k in params}
    return new_params, new_g


def segment_update(params, g, states, actions, rewards, terminal, gamma, beta, lr, clip_norm=40.0,
                   alpha=0.99, eps=0.1):
    """Everything after ``until``: the segment's gradient, clipped, applied with shared RMSProp.
    Returns (new params, new g, loss)."""
    loss, grads = segment_gradient(params, states, actions, rewards, terminal, gamma, beta)
    grads = clip_by_global_norm(grads, clip_norm)
    params, g = shared_rmsprop(params, g, grads, lr, alpha, eps)
    return params, g, loss


# ----------------------------------------------------------------------------- 6. the actor-learner loop
def train(env, steps, t_max=5, gamma=0.99, beta=0.01, lr=7e-4, hidden=(64, 64), seed=0, on_episode=None):
    """One actor-learner on a gymnasium-style ``env`` for ``steps`` steps; returns the parameters.

    The learning rate is annealed linearly to 0 over ``steps``, as the package does by default. A
    time-limit truncation is not terminal: its segment bootstraps from V(s_n).
    ``on_episode(step, return)`` is called as each episode ends.
    """
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    obs = np.asarray(obs, np.float64).reshape(-1)
    params = init_params((obs.size, *hidden), int(env.action_space.n), rng)
    g = {k: np.zeros_like(v) for k, v in params.items()}
    T, episode_return = 0, 0.0
    while T < steps:
        states, actions, rewards = [obs], [], []
        terminal = episode_over = False
        while len(actions) < t_max and not episode_over and T < steps:
            logits, _, _, _ = forward(params, obs[None, :])
            a = int(rng.choice(len(logits[0]), p=softmax(logits[0])))      # a_t ~ π(·|s_t; θ′)
            obs, r, terminal, truncated, _ = env.step(a)
            obs = np.asarray(obs, np.float64).reshape(-1)
            states.append(obs)
            actions.append(a)
            rewards.append(float(r))
            episode_return += float(r)
            T += 1
            episode_over = terminal or truncated
        lr_now = lr * max(0.0, 1.0 - T / steps)
        params, g, _ = segment_update(params, g, np.array(states), np.array(actions), np.array(rewards), terminal,
                                      gamma, beta, lr_now)
        if episode_over:
            if on_episode is not None:
                on_episode(T, episode_return)
            obs, _ = env.reset()
            obs = np.asarray(obs, np.float64).reshape(-1)
            episode_return = 0.0
    return params


if __name__ == "__main__":
    import gymnasium

    returns = []

    def report(T, ret):
        returns.append(ret)
        if len(returns) % 50 == 0:
            print(f"step {T:>7,}  mean return of the last 50 episodes {np.mean(returns[-50:]):7.1f}")

    train(gymnasium.make("CartPole-v1"), steps=100_000, lr=3e-3, on_episode=report)
