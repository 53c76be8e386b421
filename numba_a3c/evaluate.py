"""Evaluating a policy: greedy, ε-greedy or stochastic episodes with fixed parameters.

A Gaussian policy (Box actions) acts with its mean μ when greedy, samples N(μ, σ²) when
stochastic, and with probability ε takes a uniform action in the box when ε-greedy; the
environment is sent the action clipped to [−1, 1] and scaled to its bounds, as in training.

A run trained with ``--normalize-obs`` is evaluated on observations normalised with its
statistics frozen (``observations``, a :class:`numba_a3c.normalize.FrozenObservations`), as the
network saw them in training.

Native environments are evaluated entirely in nopython code (:func:`run_episodes_native`);
others through a Python loop over :class:`Policy`. Evaluation never changes the parameters it
is given; the trainer hands it a snapshot of θ taken at the evaluation's start.
"""

from collections import namedtuple

import numpy as np

from numba_a3c.algorithms.policies import (
    action_bounds_array,
    argmax,
    epsilon_greedy,
    gaussian_mean,
    sample_gaussian,
    sample_policy,
    scale_action,
)
from numba_a3c.algorithms.state import CF_SIZE
from numba_a3c.envs.base import flat_observation
from numba_a3c.envs.native import ENV_STATE_SIZE, env_reset, env_step, env_step_box
from numba_a3c.envs.registry import make_python_env
from numba_a3c.jit import njit
from numba_a3c.nn.network import forward_row, keep_state, reset_state
from numba_a3c.normalize import S_SIZE, normalize_frozen
from numba_a3c.rng import new_rng, rng_uniform, rng_uniform_range

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


# An evaluation policy as one value that nopython code can take: the network (layer table,
# parameters, head offsets), how it picks actions (mode, ε, its RNG) and its buffers (``obs[0]``
# holds the current observation). Private to the thread that evaluates.
# A Gaussian policy also has its head offsets ``out_mu``/``out_sigma`` (−1 for the others) and
# ``bounds``, laid out as a learner's config_f (its action bounds after CF_SIZE); its action goes
# into ``scratch[0:D]``. ``norm_stats``, ``norm_clip`` and ``norm_eps`` are the frozen observation
# normalisation (numba_a3c.normalize's stats layout; without observation statistics, a no-op).
PolicyState = namedtuple("PolicyState", ["table", "params", "out_q", "out_pi", "n_actions", "mode", "epsilon",
                                         "rng", "obs", "ws", "scratch", "out_mu", "out_sigma", "bounds",
                                         "norm_stats", "norm_clip", "norm_eps"])


def policy_state(network, params, mode, epsilon, rng, observations=None):
    """A :data:`PolicyState` for ``network`` with ``params`` (float32), its buffers freshly allocated;
    ``observations`` (a FrozenObservations or None) normalises what it is given."""
    obs, ws, _ = network.buffers(1)
    bounds = np.zeros(CF_SIZE, np.float64)
    if network.out_mu >= 0:
        bounds = np.concatenate([bounds, action_bounds_array(network.spec.action_low, network.spec.action_high)])
    if observations is not None and len(observations.stats) - S_SIZE != 2 * network.input_size:
        raise ValueError(f"the observation statistics hold {(len(observations.stats) - S_SIZE) // 2} components, "
                         f"the network reads {network.input_size}")
    norm = (np.zeros(S_SIZE), 0.0, 1.0) if observations is None else (observations.stats, observations.clip,
                                                                       observations.eps)
    return PolicyState(network.table, np.ascontiguousarray(params, np.float32), network.out_q, network.out_pi,
                       network.spec.n_actions, MODES[mode], float(epsilon), rng, obs, ws,
                       np.zeros(2 * network.spec.n_actions, np.float32), network.out_mu, network.out_sigma, bounds,
                       *norm)


@njit(nogil=True, cache=True)
def gaussian_action(P):
    """A Gaussian policy's action for the forward pass in ``P.ws[0]``, written into
    ``P.scratch[0:D]`` as the environment gets it (clipped to [−1, 1], scaled to the bounds):
    μ when greedy, a sample of N(μ, σ²) when stochastic, ε-greedy: uniform in the box with
    probability ε, else μ."""
    D = P.n_actions
    a = P.scratch[D:2 * D]
    mu = P.ws[0, P.out_mu:P.out_mu + D]
    if P.mode == STOCHASTIC:
        sample_gaussian(mu, P.ws[0, P.out_sigma:P.out_sigma + D], P.rng, a)
    elif P.mode == EPSILON_GREEDY and rng_uniform(P.rng) < P.epsilon:
        for k in range(D):
            a[k] = rng_uniform_range(P.rng, -1.0, 1.0)
    else:
        gaussian_mean(mu, a)
    scale_action(a, P.bounds, P.scratch[0:D])


@njit(nogil=True, cache=True)
def policy_action(P):
    """The action for the observation in ``P.obs[0]``: normalised in place (when the policy has
    observation statistics), one forward pass, then :func:`select_action` (a Gaussian policy:
    :func:`gaussian_action`, which leaves the action in ``P.scratch``; returns 0).
    A recurrent network then keeps the state its step reached for the next call."""
    normalize_frozen(P.norm_stats, P.norm_clip, P.norm_eps, P.obs[0])
    forward_row(P.table, P.params, P.obs, P.ws, 0)
    keep_state(P.table, P.ws, 0)
    if P.out_mu >= 0:
        gaussian_action(P)
        return 0
    return select_action(P.ws[0], P.out_q, P.out_pi, P.n_actions, P.mode, P.epsilon, P.rng, P.scratch)


@njit(nogil=True, cache=True)
def run_episodes_native(P, env_id, env_state, env_rng, max_steps, returns, lengths):
    """Play ``len(returns)`` episodes of a native environment with policy ``P``; write each return
    and length.

    ``max_steps`` (> 0) caps an episode in case the environment has no time limit of its own.
    """
    for e in range(returns.shape[0]):
        env_reset(env_id, env_state, env_rng, P.obs[0])
        reset_state(P.table, P.ws, 0)      # a recurrent policy starts each episode from h = c = 0
        total = 0.0
        steps = 0
        while True:
            a = policy_action(P)
            if P.out_mu >= 0:
                r, term, trunc = env_step_box(env_id, env_state, P.scratch[0:P.n_actions], env_rng, P.obs[0])
            else:
                r, term, trunc = env_step(env_id, env_state, a, env_rng, P.obs[0])
            total += r
            steps += 1
            if term or trunc or steps >= max_steps:
                break
        returns[e] = total
        lengths[e] = steps


class Policy:
    """A network with fixed parameters that picks actions (Python API, one observation at a time)."""

    def __init__(self, network, params, mode="greedy", epsilon=0.0, seed=0, observations=None):
        self.network = network
        self.state = policy_state(network, params, mode, epsilon, new_rng(seed), observations)
        self.scale = np.float32(network.spec.input_scale)

    def __call__(self, observation):
        """The action: an int, or for a Gaussian policy a float32 vector as the environment takes it."""
        flat_observation(observation, self.scale, self.state.obs[0])
        a = policy_action(self.state)
        if self.state.out_mu >= 0:
            return self.state.scratch[:self.state.n_actions].copy()
        return int(a)

    def reset(self):
        """Start a new episode: a recurrent network's state (h, c) ← 0 (nothing to do for a
        feed-forward one). Between resets, each call carries the state on to the next."""
        reset_state(self.state.table, self.state.ws, 0)


def evaluate(network, params, env_info, episodes=10, mode="greedy", epsilon=0.0, seed=0, max_steps=0,
             on_frame=None, observations=None):
    """Returns (returns, lengths) of ``episodes`` episodes of ``env_info``'s environment.

    ``observations``: the run's frozen observation normalisation
    (:class:`numba_a3c.normalize.FrozenObservations`), or None.
    ``max_steps`` caps an episode (0: the environment's own limit, or 100,000). ``on_frame``, if
    given, forces the Python path and is called with ``env.render()`` after every reset and step
    (for recordings).
    """
    cap = max_steps or env_info.max_episode_steps or 100_000
    returns = np.zeros(episodes, np.float64)
    lengths = np.zeros(episodes, np.int64)
    if env_info.kind == "native" and on_frame is None:
        policy = policy_state(network, params, mode, epsilon, new_rng(seed), observations)
        run_episodes_native(policy, env_info.native_id, np.zeros(ENV_STATE_SIZE), new_rng(seed + 1), cap,
                            returns, lengths)
        return returns, lengths
    policy = Policy(network, params, mode, epsilon, seed, observations)
    env = make_python_env(env_info, seed=seed, render=on_frame is not None)
    try:
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            policy.reset()
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
