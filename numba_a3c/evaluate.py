"""Evaluating a policy: greedy, ε-greedy or stochastic episodes with fixed parameters.

Native environments are evaluated entirely in nopython code (:func:`run_episodes_native`);
others through a Python loop over :class:`Policy`. Evaluation never changes the parameters it
is given; the trainer hands it a snapshot of θ taken at the evaluation's start.
"""

import numpy as np
from numba import njit

from numba_a3c.algorithms.policies import argmax, epsilon_greedy, sample_policy
from numba_a3c.envs.base import flat_observation
from numba_a3c.envs.native import ENV_STATE_SIZE, env_reset, env_step
from numba_a3c.envs.registry import make_python_env
from numba_a3c.nn.network import forward_row
from numba_a3c.rng import new_rng

GREEDY = 0
EPSILON_GREEDY = 1
STOCHASTIC = 2
MODES = {"greedy": GREEDY, "epsilon": EPSILON_GREEDY, "stochastic": STOCHASTIC}


@njit(nogil=True, cache=True)
def select_action(ws_row, out_q, out_pi, n_actions, mode, epsilon, rng, scratch):
    """The evaluation action from one forward pass: argmax of Q (or of π's logits) when greedy,
    ε-greedy on either, or a sample of π (actor-critic; a Q network falls back to ε-greedy)."""
    off = out_q if out_q >= 0 else out_pi
    values = ws_row[off:off + n_actions]
    if mode == STOCHASTIC and out_pi >= 0:
        return sample_policy(values, scratch[0:n_actions], rng)
    if mode == GREEDY:
        return argmax(values)
    return epsilon_greedy(values, epsilon, rng)


@njit(nogil=True, cache=True)
def run_episodes_native(table, params, out_q, out_pi, n_actions, env_id, env_state, env_rng, rng,
                        obs, ws, scratch, mode, epsilon, max_steps, returns, lengths):
    """Play ``len(returns)`` episodes of a native environment; write each return and length.

    ``max_steps`` (> 0) caps an episode in case the environment has no time limit of its own.
    """
    for e in range(returns.shape[0]):
        env_reset(env_id, env_state, env_rng, obs[0])
        total = 0.0
        steps = 0
        while True:
            forward_row(table, params, obs, ws, 0)
            a = select_action(ws[0], out_q, out_pi, n_actions, mode, epsilon, rng, scratch)
            r, term, trunc = env_step(env_id, env_state, a, env_rng, obs[0])
            total += r
            steps += 1
            if term or trunc or steps >= max_steps:
                break
        returns[e] = total
        lengths[e] = steps


class Policy:
    """A network with fixed parameters that picks actions (Python API, one observation at a time)."""

    def __init__(self, network, params, mode="greedy", epsilon=0.0, seed=0):
        self.network = network
        self.params = np.ascontiguousarray(params, dtype=np.float32)
        self.mode = MODES[mode]
        self.epsilon = float(epsilon)
        self.rng = new_rng(seed)
        self.obs, self.ws, _ = network.buffers(1)
        self.scratch = np.zeros(2 * network.spec.n_actions, np.float32)
        self.scale = np.float32(network.spec.input_scale)

    def __call__(self, observation):
        flat_observation(observation, self.scale, self.obs[0])
        net = self.network
        forward_row(net.table, self.params, self.obs, self.ws, 0)
        return int(select_action(self.ws[0], net.out_q, net.out_pi, net.spec.n_actions, self.mode,
                                 self.epsilon, self.rng, self.scratch))


def evaluate(network, params, env_info, episodes=10, mode="greedy", epsilon=0.0, seed=0, max_steps=0,
             on_frame=None):
    """Returns (returns, lengths) of ``episodes`` episodes of ``env_info``'s environment.

    ``max_steps`` caps an episode (0: the environment's own limit, or 100,000). ``on_frame``, if
    given, forces the Python path and is called with ``env.render()`` after every reset and step
    (for recordings).
    """
    cap = max_steps or env_info.max_episode_steps or 100_000
    returns = np.zeros(episodes, np.float64)
    lengths = np.zeros(episodes, np.int64)
    if env_info.kind == "native" and on_frame is None:
        obs, ws, _ = network.buffers(1)
        run_episodes_native(network.table, np.ascontiguousarray(params, np.float32), network.out_q, network.out_pi,
                            network.spec.n_actions, env_info.native_id, np.zeros(ENV_STATE_SIZE),
                            new_rng(seed + 1), new_rng(seed), obs, ws,
                            np.zeros(2 * network.spec.n_actions, np.float32), MODES[mode], float(epsilon), cap,
                            returns, lengths)
        return returns, lengths
    policy = Policy(network, params, mode, epsilon, seed)
    env = make_python_env(env_info, seed=seed, render=on_frame is not None)
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            if on_frame is not None:
                on_frame(env.render())
            total, steps, done = 0.0, 0, False
            while not done:
                obs, r, term, trunc, info = env.step(policy(obs))
                total += float(info.get("raw_reward", r)) if isinstance(info, dict) else float(r)
                steps += 1
                done = term or trunc or steps >= cap
                if on_frame is not None:
                    on_frame(env.render())
            returns[e], lengths[e] = total, steps
    finally:
        env.close()
    return returns, lengths
