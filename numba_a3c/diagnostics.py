"""Is this network learning, or dead? Health measurements of a network on states it visits.

``asyncrl inspect RUN --health`` plays the saved policy for a few hundred steps (its own
environment, a fixed seed), keeps the observations, rewards and actions, and measures on them:

* per hidden ReLU layer: the fraction of units (a dense layer's outputs, a conv layer's filters)
  that are **never active** on any of the frames (dead units: their gradient is 0 on every state
  the policy visits, so they do not come back), the fraction of active outputs over all frames
  and positions, and the root-mean-square of the outputs (the activation scale);
* per LSTM layer: the share of its **saturated** gate values (σ(1 − σ) of the i, f and o gates,
  1 − g² of the cell candidate, below 8 % of their maximum: the gradient through such a gate is
  all but cut) and of saturated cells (1 − tanh²(c) below 8 %), and the largest |c|. A saturated
  LSTM passes almost no gradient to the layers before it, so the body stops learning although
  nothing is dead;
* the heads: the policy's mean entropy H(π) against its maximum log A (a policy whose entropy
  stays at log A has not learned anything yet) — for a Gaussian policy its differential entropy
  Σ_k ½ log(2πe σ²_k) and mean σ instead (no maximum), the value estimate V(s) (or max_a Q(s, a)) and
  its error against the discounted return G_t = Σ_k γ^k r_{t+k} observed from that state (the
  tail bootstrapped from the last state's estimate), with the explained variance
  1 − Var(G − V) / Var(G) (1: V predicts G; ≤ 0: it does no better than a constant);
* per tensor: the norm of the loss gradient per frame, ‖∂L/∂w‖₂ / N (the gradient summed over
  the N frames, as a segment sums it), against ‖w‖₂, with L
  the method's own loss (A3C's policy + entropy + value loss with the observed returns as R,
  or the squared error of Q(s, a) against G for the Q methods), and — for shared RMSProp — the
  mean statistic g and the step scale 1/√(g + ε) that multiplies the learning rate (close to
  1/√ε means ε dominates: the update is plain SGD for that tensor);
* for Sarsa, with the checkpoint's target network θ⁻: the **bootstrap's bias**
  (:func:`bootstrap_bias`), how much lower θ⁻ reads the action θ prefers than θ does, and the
  downward shift of the values it implies.

Everything is plain data (dicts of floats), printed by :func:`format_health` or as JSON.
"""

import numpy as np

from numba_a3c.nn.network import LSTM_C, LSTM_GATES, LSTM_TC, backward_rows, forward_row, reset_state


def _rows_of(network, name):
    """(offset, size) of layer ``name``'s output in a workspace row."""
    from numba_a3c.nn.network import T_OUT, T_OUT_SIZE

    index = [layer["name"] for layer in network.layers].index(name)
    return int(network.table[index][T_OUT]), int(network.table[index][T_OUT_SIZE])


def collect(network, params, env_info, steps=400, seed=0, mode="stochastic", epsilon=0.05, observations=None):
    """Play ``steps`` steps with the policy (``mode`` as in evaluation; episodes restart as they
    end; ``observations`` normalises what it sees, a FrozenObservations or None) and return
    (observations (N, input_size) float32 scaled (and normalised) as the network reads them,
    actions (N,) — for a Gaussian policy (N, D), in the unit box [−1, 1]^D (the clipped action
    mapped back from the environment's bounds) —, rewards (N,), ends (N,) bool: True where the
    step ended an episode)."""
    from numba_a3c.algorithms.policies import action_bounds_array
    from numba_a3c.envs.base import flat_observation
    from numba_a3c.envs.registry import make_python_env
    from numba_a3c.evaluate import Policy

    policy = Policy(network, params, mode, epsilon, seed, observations)  # a Q network samples ε-greedily
    norm = (lambda x: x) if observations is None else observations.apply
    gaussian = network.out_mu >= 0
    obs = np.zeros((steps, network.input_size), np.float32)
    actions = np.zeros((steps, network.spec.n_actions) if gaussian else steps, np.float32 if gaussian else np.int64)
    if gaussian:   # the environment's action a ↦ (a − c) / h, back into the unit box
        bounds = action_bounds_array(network.spec.action_low, network.spec.action_high).reshape(-1, 2)
        centre, half = bounds[:, 0], np.where(bounds[:, 1] > 0, bounds[:, 1], 1.0)
    rewards = np.zeros(steps, np.float64)
    ends = np.zeros(steps, bool)
    scale = np.float32(network.spec.input_scale)
    if env_info.kind == "native" and not gaussian:
        from numba_a3c.envs.native import ENV_STATE_SIZE, env_reset, env_step
        from numba_a3c.rng import new_rng

        state, env_rng = np.zeros(ENV_STATE_SIZE), new_rng(seed + 1)
        row = np.zeros(network.input_size, np.float32)
        env_reset(env_info.native_id, state, env_rng, row)
        for t in range(steps):
            obs[t] = row
            norm(obs[t])
            actions[t] = policy(row)
            r, term, trunc = env_step(env_info.native_id, state, actions[t], env_rng, row)
            rewards[t], ends[t] = r, term or trunc
            if ends[t]:
                env_reset(env_info.native_id, state, env_rng, row)
                policy.reset()
        return obs, actions, rewards, ends
    env = make_python_env(env_info, seed=seed)
    try:
        o, _ = env.reset(seed=seed)
        for t in range(steps):
            flat_observation(o, scale, obs[t])
            norm(obs[t])
            a = policy(o)
            actions[t] = (a - centre) / half if gaussian else a
            o, r, term, trunc, info = env.step(a)
            rewards[t], ends[t] = float(r), bool(term or trunc)
            if ends[t]:
                o, _ = env.reset()
                policy.reset()
    finally:
        env.close()
    return obs, actions, rewards, ends


def discounted_returns(rewards, ends, gamma, tail):
    """G_t = r_t + γ G_{t+1}, restarted where an episode ended (``ends[t]``), with G after the
    last step = ``tail`` (an estimate of the value of the state that follows)."""
    G = np.zeros(len(rewards))
    R = float(tail)
    for t in range(len(rewards) - 1, -1, -1):
        if ends[t]:
            R = 0.0
        R = float(rewards[t]) + gamma * R
        G[t] = R
    return G


def _q_values(network, params, observations):
    """Q(s, ·; params) of every row of ``observations`` (a feed-forward Q network), float64."""
    params = np.ascontiguousarray(params, np.float32)
    obs, ws, _ = network.buffers(len(observations))
    obs[:] = observations
    for i in range(len(observations)):
        forward_row(network.table, params, obs, ws, i)
    return ws[:, network.out_q:network.out_q + network.spec.n_actions].astype(np.float64)


def bootstrap_bias(q, q_target, gamma):
    """How far Sarsa's bootstrap moves the values it is regressed on, measured on these frames.

    Write Q(s, a) = Q̄(s) + A(s, a), with Q̄(s) the mean over the actions. The thread mostly takes
    a* = argmax_a Q(s, a; θ), so the values being fitted carry the advantage θ itself gives its
    favourite, g_θ = mean_s A(s, a*; θ) ≥ 0. Sarsa's target reads the next state's value through
    θ⁻ at the action θ chose there, so it sees g⁻ = mean_s A(s, a*; θ⁻). Where θ⁻ does not share θ's
    preference among nearly equal actions (θ has moved since the last copy), g⁻ is smaller than
    g_θ. With b = g_θ − g⁻ the fitted values satisfy, in the mean, Q_sel = r̄ + γ (Q_sel − b), so

        Q_sel = r̄ / (1 − γ) − γ b / (1 − γ):

    the bias b of each bootstrap is carried over the whole horizon, multiplied by γ/(1 − γ) (99 at
    γ = 0.99), and pulls the values down. (Q-learning's target takes θ⁻'s own maximum, whose
    advantage is g_θ's in distribution, so it has no such term.) Returns ``bootstrap_bias`` = b and
    ``bootstrap_shift`` = −γ b / (1 − γ) (None when γ = 1).

    One checkpoint gives one θ⁻ at one distance from θ, so b read from it fluctuates from one
    checkpoint to the next (it can even come out negative), and one saved while the threads run
    holds θ and θ⁻ copied moments apart; its average over a run is what sets the values' level.
    README, "One-step Sarsa on Pong": b and the values on Pong with I_target 1,000 and 100.
    """
    best = q.argmax(axis=1)
    rows = np.arange(len(best))
    b = float(np.mean(q[rows, best] - q.mean(axis=1)) - np.mean(q_target[rows, best] - q_target.mean(axis=1)))
    return dict(bootstrap_bias=b, bootstrap_shift=-gamma * b / (1.0 - gamma) if gamma < 1 else None)


#: A gate's (or the cell's) derivative below this share of its maximum counts as saturated.
SATURATED_SLOPE = 0.08
#: An LSTM layer with at least this share of saturated gate values is reported.
SATURATED_LAYER = 0.5


def lstm_saturation(ws, off, H):
    """Saturation of the LSTM layer whose area starts at column ``off`` of the workspace rows
    ``ws`` (H cells; the post-activation gates i, f, g, o and tanh(c) as the forward pass kept
    them): the share of gate values whose derivative is below :data:`SATURATED_SLOPE` of its
    maximum (σ(1 − σ) < 0.08 · ¼ for i, f and o, 1 − g² < 0.08 for g), the same share of the cells'
    tanh(c), and the largest |c|."""
    gates = ws[:, off + LSTM_GATES * H:off + (LSTM_GATES + 4) * H].astype(np.float64)
    sig = np.concatenate([gates[:, 0:H], gates[:, H:2 * H], gates[:, 3 * H:4 * H]], axis=1)
    g = gates[:, 2 * H:3 * H]
    tc = ws[:, off + LSTM_TC * H:off + (LSTM_TC + 1) * H].astype(np.float64)
    flat = np.concatenate([(sig * (1.0 - sig) < SATURATED_SLOPE * 0.25).ravel(),
                           (1.0 - g * g < SATURATED_SLOPE).ravel()])
    return dict(saturated_fraction=float(flat.mean()),
                cell_saturated_fraction=float(np.mean(1.0 - tc * tc < SATURATED_SLOPE)),
                cell_abs_max=float(np.abs(ws[:, off + LSTM_C * H:off + (LSTM_C + 1) * H]).max()))


def health(network, params, observations, actions, rewards, ends, gamma=0.99, reward_clip=0.0, rms_g=None,
           rms_eps=0.1, beta=0.01, value_weight=1.0, value_scale=(0.0, 1.0), policy_weight=1.0,
           target_params=None):
    """The measurements listed in the module docstring, as a dict (the gradients are those of the
    run's loss: ``beta``, ``value_weight`` and ``policy_weight`` as it trained with them, see
    :func:`numba_a3c.nn.losses.a3c_loss`; ``value_scale`` (μ, σ) of a run with ``--normalize-value``,
    whose value head outputs v̂ with V = σ v̂ + μ, and whose loss reads returns in the same units,
    (G − μ)/σ; :func:`policy_weight_of` gives the policy weight such a run trained with)."""
    from numba_a3c.nn.losses import VAR_MIN, a3c_loss, gaussian_a3c_loss, q_loss

    params = np.ascontiguousarray(params, np.float32)
    N = len(observations)
    obs, ws, delta = network.buffers(N)
    obs[:] = observations
    for i in range(N):
        forward_row(network.table, params, obs, ws, i)
        if ends[i] and i + 1 < N:
            reset_state(network.table, ws, i + 1)    # a recurrent network's next episode starts from 0

    layers = []
    for layer in network.layers:
        if layer.get("head"):
            continue
        off, size = _rows_of(network, layer["name"])
        out = ws[:, off:off + size].astype(np.float64)
        entry = dict(name=layer["name"], activation=layer["activation"], units=size,
                     rms=float(np.sqrt(np.mean(out * out))))
        if layer["type"] == "lstm":
            entry.update(lstm_saturation(ws, off, size))
        if layer["activation"] == "relu":
            active = out > 0
            # A unit is a dense layer's output or a conv layer's filter (all its positions together):
            # dead when it is 0 on every frame (and, for a filter, at every position).
            units = active.reshape(N, layer["output_shape"][0], -1).any(axis=(0, 2))
            entry.update(dead_fraction=float(np.mean(~units)), active_fraction=float(np.mean(active)))
            entry["units"] = int(layer["output_shape"][0])
        layers.append(entry)

    r = np.clip(rewards, -reward_clip, reward_clip) if reward_clip > 0 else np.asarray(rewards, np.float64)
    A = network.spec.n_actions
    heads = {}
    if network.out_pi >= 0:
        logits = ws[:, network.out_pi:network.out_pi + A].astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        entropy = -np.sum(p * np.log(np.maximum(p, 1e-30)), axis=1)
        estimate = value_scale[1] * ws[:, network.out_v].astype(np.float64) + value_scale[0]
        heads.update(entropy=float(entropy.mean()), max_entropy=float(np.log(A)),
                     most_likely_action_share=float(np.bincount(p.argmax(axis=1), minlength=A).max() / N))
    elif network.out_mu >= 0:
        var = np.logaddexp(0.0, ws[:, network.out_sigma:network.out_sigma + A].astype(np.float64)) + float(VAR_MIN)
        estimate = value_scale[1] * ws[:, network.out_v].astype(np.float64) + value_scale[0]
        heads.update(gaussian_entropy=float(np.mean(np.sum(0.5 * np.log(2 * np.pi * np.e * var), axis=1))),
                     sigma_mean=float(np.mean(np.sqrt(var))))
    else:
        q = ws[:, network.out_q:network.out_q + A].astype(np.float64)
        estimate = q.max(axis=1)
        heads.update(greedy_action_share=float(np.bincount(q.argmax(axis=1), minlength=A).max() / N))
        if target_params is not None:
            heads.update(bootstrap_bias(q, _q_values(network, target_params, observations), gamma))
    G = discounted_returns(r, ends, gamma, estimate[-1])
    err = G - estimate
    var_g = float(np.var(G))
    heads.update(value_mean=float(estimate.mean()), value_std=float(estimate.std()), return_mean=float(G.mean()),
                 return_std=float(np.sqrt(var_g)),
                 value_rmse=float(np.sqrt(np.mean(err * err))),
                 explained_variance=float(1.0 - np.var(err) / var_g) if var_g > 0 else None)

    grads = np.zeros(network.n_params, np.float32)
    targets = ((G - value_scale[0]) / value_scale[1] if network.out_v >= 0 else G).astype(np.float32)
    acts = np.ascontiguousarray(actions, np.int64 if network.out_mu < 0 else np.float32)
    if network.out_mu >= 0:
        mu, sg, v = network.out_mu, network.out_sigma, network.out_v
        gaussian_a3c_loss(ws[:, mu:mu + A], ws[:, sg:sg + A], ws[:, v:v + 1], acts, targets, float(beta),
                          float(policy_weight), float(value_weight), delta[:, mu:mu + A], delta[:, sg:sg + A],
                          delta[:, v:v + 1], N)
    elif network.out_pi >= 0:
        a3c_loss(ws[:, network.out_pi:network.out_pi + A], ws[:, network.out_v:network.out_v + 1], acts, targets,
                 float(beta), float(policy_weight), float(value_weight), delta[:, network.out_pi:network.out_pi + A],
                 delta[:, network.out_v:network.out_v + 1], np.zeros(A, np.float32), N)
    else:
        q_loss(ws[:, network.out_q:network.out_q + A], acts, targets, delta[:, network.out_q:network.out_q + A], N)
    backward_rows(network.table, params, grads, obs, ws, delta, N, network.backward_scratch(N))
    tensors = []
    for p in network.params:
        w = params[p.offset:p.offset + p.size].astype(np.float64)
        dw = grads[p.offset:p.offset + p.size].astype(np.float64)
        entry = dict(name=p.name, norm=float(np.sqrt(w @ w)), grad_norm=float(np.sqrt(dw @ dw) / N))
        if rms_g is not None and len(rms_g) == network.n_params:
            g = np.asarray(rms_g[p.offset:p.offset + p.size], np.float64)
            entry.update(rms_g_mean=float(g.mean()), rms_step_scale=float(np.mean(1.0 / np.sqrt(g + rms_eps))))
        tensors.append(entry)
    return dict(frames=N, episodes_ended=int(np.sum(ends)), reward_sum=float(np.sum(rewards)), layers=layers,
                heads=heads, tensors=tensors)


def value_moments_of(value_stats):
    """(μ, σ) of a run's ``--normalize-value`` statistics, or (0, 1) (V read as it is) for None."""
    from numba_a3c.normalize import value_moments

    return (0.0, 1.0) if value_stats is None else tuple(float(x) for x in value_moments(value_stats))


def policy_weight_of(config, value_stats):
    """The policy term's weight k_π in a run's loss: σ for ``--normalize-value`` without
    ``--normalize-advantage`` (its policy reads the raw advantage, :func:`numba_a3c.nn.losses.a3c_loss`),
    else 1."""
    if not config.normalize_value or config.normalize_advantage:
        return 1.0
    return value_moments_of(value_stats)[1]


def checkpoint_health(ckpt, steps=400, seed=0):
    """:func:`health` of a loaded checkpoint on ``steps`` steps of its own environment, played with
    its policy (sampled from π for A3C, ε-greedy with ε 0.05 for the Q methods)."""
    from numba_a3c.build import environment
    from numba_a3c.nn.network import Network

    config = ckpt.config
    network = Network(ckpt.spec)
    env_info = environment(config)
    from numba_a3c.normalize import reward_scale

    obs, actions, rewards, ends = collect(network, ckpt.theta, env_info, steps=steps, seed=seed,
                                          observations=ckpt.frozen_observations())
    rewards = rewards * reward_scale(ckpt.norm_stats, ckpt.norm_config)   # V learned scaled returns
    g = np.asarray(ckpt.opt_shared)
    report = health(network, ckpt.theta, obs, actions, rewards, ends, gamma=config.gamma,
                    reward_clip=config.reward_clip,
                    rms_g=g if config.optimizer == "shared-rmsprop" and g.size else None, rms_eps=config.rms_eps,
                    beta=config.beta, value_weight=config.value_weight, value_scale=value_moments_of(ckpt.value_stats),
                    policy_weight=policy_weight_of(config, ckpt.value_stats),
                    target_params=ckpt.theta_target if config.algo == "sarsa" else None)
    report.update(global_step=ckpt.global_step, env=config.env, algo=config.algo, seed=seed)
    return report


#: A ReLU layer with fewer positive outputs than this share, over all frames and positions, is "nearly dead".
SILENT_LAYER = 0.01
#: A value estimate whose spread over the frames is below this share of the returns' "hardly depends on the state".
CONSTANT_ESTIMATE = 0.02
#: A bootstrap shift (:func:`bootstrap_bias`) larger than this share of the returns' scale is reported.
BOOTSTRAP_SHIFT = 0.5


def verdicts(report, alarms_only=False):
    """Short plain-language readings of a health report (a list of strings). With ``alarms_only``,
    only the readings of a network that is dying or dead (dead or nearly silent layers), which
    training prints beside each periodic evaluation; not those that a network that has not learned
    yet also gives (a uniform policy, an unexplained return, an estimate that ignores the state)."""
    out = []
    for layer in report["layers"]:
        dead = layer.get("dead_fraction")
        if dead is not None and dead >= 0.5:
            out.append((True, f"{layer['name']}: {dead:.0%} of its units are never active on these frames (dead "
                              f"ReLUs: a learning rate too high for this optimizer, or a bad initialisation)"))
        active = layer.get("active_fraction")
        if active is not None and active < SILENT_LAYER and (dead is None or dead < 1.0):
            out.append((True, f"{layer['name']}: only {active:.1%} of its outputs are ever positive: the layer "
                              f"barely passes its input on (nearly dead; what follows it sees almost only biases)"))
        sat = layer.get("saturated_fraction")
        if sat is not None and sat >= SATURATED_LAYER:
            out.append((True, f"{layer['name']}: {sat:.0%} of its gate values are saturated (and "
                              f"{layer['cell_saturated_fraction']:.0%} of its cells, |c| up to "
                              f"{layer['cell_abs_max']:.3g}): almost no gradient passes through it to the "
                              f"layers before (its inputs grew too large for its weights)"))
    heads = report["heads"]
    if heads["return_std"] > 0 and heads["value_std"] < CONSTANT_ESTIMATE * heads["return_std"]:
        # not an alarm: a network that has not learned yet reads the same (CartPole's at initialisation)
        out.append((False, f"the value estimate hardly depends on the state (std {heads['value_std']:.3g} against "
                           f"the returns' {heads['return_std']:.3g}): not learned yet, or not reading its input"))
    if "entropy" in heads and heads["entropy"] >= 0.98 * heads["max_entropy"]:
        out.append((False, f"the policy is still (nearly) uniform: entropy {heads['entropy']:.3f} of log A = "
                           f"{heads['max_entropy']:.3f}; it has not learned to prefer any action yet"))
    if "entropy" in heads and heads["entropy"] <= 0.02 * heads["max_entropy"]:
        out.append((False, "the policy is (nearly) deterministic: entropy close to 0, exploration has collapsed"))
    ev = heads.get("explained_variance")
    if ev is not None and ev <= 0 and heads["return_std"] > 0.05 * abs(heads["return_mean"]):
        out.append((False, f"the value estimate explains none of the observed returns (explained variance "
                           f"{ev:.2f})"))
    shift = heads.get("bootstrap_shift")
    if shift is not None and -shift > BOOTSTRAP_SHIFT * max(heads["return_std"], abs(heads["return_mean"])):
        out.append((False, f"Sarsa's bootstrap pulls the values down by about {-shift:.3g}: the target network does "
                           f"not share the online network's preference among nearly equal actions (a shorter "
                           f"--target-interval keeps the two closer)"))
    if alarms_only:
        return [text for alarm, text in out if alarm]
    return [text for _, text in out] or ["no sign of a dead or untrained network on these frames"]


def format_health(report):
    """The health report as text for a terminal."""
    lines = [f"health of {report['algo']} on {report['env']} at global step {report['global_step']:,}: "
             f"{report['frames']} frames played with its policy (seed {report['seed']}), "
             f"{report['episodes_ended']} episodes ended, reward sum {report['reward_sum']:g}", "",
             f"  {'layer':<8}{'units':>7}{'dead':>8}{'active':>8}{'rms':>11}"]
    for layer in report["layers"]:
        dead = layer.get("dead_fraction")
        act = layer.get("active_fraction")
        lines.append(f"  {layer['name']:<8}{layer['units']:>7}{'' if dead is None else f'{dead:.1%}':>8}"
                     f"{'' if act is None else f'{act:.1%}':>8}{layer['rms']:>11.4g}")
    for layer in report["layers"]:
        if "saturated_fraction" in layer:
            lines.append(f"  {layer['name']}: {layer['saturated_fraction']:.1%} of gate values saturated, "
                         f"{layer['cell_saturated_fraction']:.1%} of cells (tanh(c)); |c| up to "
                         f"{layer['cell_abs_max']:.4g}")
    h = report["heads"]
    lines.append("")
    if "gaussian_entropy" in h:
        lines.append(f"  Gaussian policy: entropy {h['gaussian_entropy']:.3f} (Σ_k ½ log 2πeσ²), mean σ "
                     f"{h['sigma_mean']:.3g} in the unit action box")
    if "entropy" in h:
        lines.append(f"  policy entropy {h['entropy']:.3f} (max log A = {h['max_entropy']:.3f}); most likely action "
                     f"on {h['most_likely_action_share']:.0%} of frames")
    ev = h["explained_variance"]
    lines.append(f"  value {h['value_mean']:.4g} ± {h['value_std']:.3g} against discounted return "
                 f"{h['return_mean']:.4g}: "
                 f"RMS error {h['value_rmse']:.4g}, explained variance {'n/a' if ev is None else f'{ev:.3f}'}")
    if h.get("bootstrap_bias") is not None:
        shift = h["bootstrap_shift"]
        lines.append(f"  Sarsa's bootstrap bias {h['bootstrap_bias']:.4g} per step (θ's greedy action's advantage "
                     f"as θ reads it, less as θ⁻ does)" + ("" if shift is None else
                                                         f": moves the values by about {shift:.3g}"))
    lines.append("")
    has_rms = any("rms_g_mean" in t for t in report["tensors"])
    lines.append(f"  {'tensor':<10}{'‖w‖':>11}{'‖∂L/∂w‖':>12}" + (f"{'mean g':>11}{'1/√(g+ε)':>10}" if has_rms else ""))
    for t in report["tensors"]:
        row = f"  {t['name']:<10}{t['norm']:>11.4g}{t['grad_norm']:>12.4g}"
        if "rms_g_mean" in t:
            row += f"{t['rms_g_mean']:>11.3g}{t['rms_step_scale']:>10.3g}"
        lines.append(row)
    lines.append("")
    lines += [f"  - {v}" for v in verdicts(report)]
    return "\n".join(lines)


HEALTH_FRAMES = 256   # frames played for each row of a run's health.csv


def health_row(network, params, env_info, config, steps=HEALTH_FRAMES, seed=0, observations=None,
               reward_scale=1.0, value_stats=None, target_params=None):
    """One row of a run's ``health.csv``: ({column: value}) from :func:`health` on ``steps`` frames
    played by the policy ``params``: the policy's entropy (A3C; for a Gaussian policy the
    differential entropy Σ_k ½ log 2πeσ²_k, which can be negative), the value estimate's RMS error
    and explained variance, and per hidden layer the share of dead units, of active outputs and
    the RMS of its outputs (``conv1_dead``, ``conv1_active``, ``conv1_rms`` …), per LSTM layer its
    saturated shares (``lstm1_saturated``, ``lstm1_cell_saturated``; :func:`lstm_saturation`). A run that
    normalises passes its frozen ``observations``, the ``reward_scale`` its value head learned with and
    its ``value_stats`` (``--normalize-value``). A Sarsa run's ``target_params`` (θ⁻, copied with
    ``params``) add the columns ``bootstrap_bias`` and ``bootstrap_shift`` (:func:`bootstrap_bias`).
    Returns ``(row, alarms)``: the alarms are :func:`verdicts` ``(alarms_only=True)`` of the same report."""
    obs, actions, rewards, ends = collect(network, params, env_info, steps=steps, seed=seed, observations=observations)
    report = health(network, params, obs, actions, rewards * reward_scale, ends, gamma=config.gamma,
                    reward_clip=config.reward_clip, beta=config.beta, value_weight=config.value_weight,
                    value_scale=value_moments_of(value_stats), policy_weight=policy_weight_of(config, value_stats),
                    target_params=target_params)
    h = report["heads"]
    entropy = h.get("entropy", h.get("gaussian_entropy", float("nan")))   # a Gaussian policy's is differential
    row = dict(entropy=entropy, value_mean=h["value_mean"], value_rmse=h["value_rmse"],
               explained_variance=h["explained_variance"] if h["explained_variance"] is not None else float("nan"))
    for layer in report["layers"]:
        name = layer["name"]
        row[f"{name}_dead"] = layer.get("dead_fraction", float("nan"))
        row[f"{name}_active"] = layer.get("active_fraction", float("nan"))
        row[f"{name}_rms"] = layer["rms"]
        if "saturated_fraction" in layer:
            row[f"{name}_saturated"] = layer["saturated_fraction"]
            row[f"{name}_cell_saturated"] = layer["cell_saturated_fraction"]
    if "bootstrap_bias" in h:
        row["bootstrap_bias"] = h["bootstrap_bias"]
        row["bootstrap_shift"] = h["bootstrap_shift"] if h["bootstrap_shift"] is not None else float("nan")
    return row, verdicts(report, alarms_only=True)


def append_health(path, global_step, wall_time, row):
    """Append ``row`` to the CSV file ``path`` (with its header first if the file is new). A file
    that already has a header keeps its columns: a value it has no column for is left out, a column
    the row lacks is left empty (a run resumed by a version that logs other columns)."""
    import os

    values = {"global_step": str(int(global_step)), "wall_time": f"{wall_time:.3f}",
              **{k: f"{v:.6g}" for k, v in row.items()}}
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if new:
        columns = list(values)
    else:
        with open(path) as fh:
            columns = fh.readline().strip().split(",")
    with open(path, "a") as fh:
        if new:
            fh.write(",".join(columns) + "\n")
        fh.write(",".join(values.get(c, "") for c in columns) + "\n")
