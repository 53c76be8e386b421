"""A configuration turned into a run's parts, in one place: config → environment → network → initial state.

::

    TrainConfig ──environment()──▶ EnvInfo        what the observations and actions are, and how to
                                                  make the environment (native id, gymnasium, ALE)
                ──network_spec()─▶ NetworkSpec    body and heads the configuration asks for on it
                ──Network()──────▶ Network        flat parameter layout, layer table, whole-net passes
                ──initial_state()▶ SharedState    θ initialised from the seed, optimiser statistics,
                                                  counters, per-thread rows and RNG states

Every command builds these once, here: ``asyncrl train`` checks them
(:func:`numba_a3c.validation.check_environment` returns the :class:`RunParts` it built) and hands
them to the :class:`~numba_a3c.trainer.Trainer`; ``eval`` and ``inspect`` compare a checkpoint's
network with the one its configuration asks for; the benchmarks build their runs with
:func:`build_run`. Building allocates the arrays but starts no thread and writes no file.
"""

from dataclasses import dataclass, replace

import numpy as np

from numba_a3c.config import RECURRENT_NETWORKS, TrainConfig
from numba_a3c.envs.base import EnvInfo
from numba_a3c.envs.registry import describe_callable, describe_env
from numba_a3c.nn.network import Network, atari_lstm_spec, atari_spec, lstm_spec, mlp_spec, small_conv_spec
from numba_a3c.workers import SharedState, new_shared_state, processes_wanted


class NetworkChoiceError(ValueError):
    """Options that do not go together (a recurrent or continuous network with a method that cannot
    use it, --separate-value off the MLP); the message is the whole user-facing sentence."""


def environment(config, make_env=None):
    """The :class:`EnvInfo` of ``config.env`` (gymnasium's version where ``config.gym`` asks for it),
    or of the environments ``make_env()`` returns when given (Python API; ``config.env`` is then its
    ``python:<name>`` id); raises :class:`~numba_a3c.envs.base.EnvError` for one that cannot be used."""
    if make_env is not None:
        return describe_callable(make_env)
    return describe_env(config.env, force_gym=config.gym, env_kwargs=config.env_kwargs)


def network_spec(config, env_info):
    """The network a configuration asks for on an environment (Q heads for the Q methods).

    ``atari``: the paper's network on 4×84×84 frames; ``atari-lstm``: the same followed by 256 LSTM
    cells; ``lstm``: dense layers of ``hidden[:-1]`` then an LSTM of ``hidden[-1]`` cells (both
    recurrent, A3C only: another method raises :class:`NetworkChoiceError`); ``conv``: a small convolutional body on
    (channels, height, width) observations; ``mlp``: a dense body on the flattened observation,
    scaled by the environment's ``input_scale``; ``auto``: ``conv`` for (C, H, W) observations at least
    3×3, else ``mlp``. Raises ValueError when the network cannot read the
    environment's observations. A Discrete(n) observation space reaches the MLP one-hot encoded
    (``input_encoding``, applied by the environment wrapper of
    :func:`numba_a3c.envs.registry.make_python_env`), and an (H, W, C) image transposed to (C, H, W)
    (encoding "hwc"); uint8 pixels are scaled by 1/255 (``input_scale``), for the MLP and the conv net alike.
    A Box action space (A3C only) gets the ``"gaussian"`` heads (μ, σ, V) and the environment's action bounds.
    """
    if env_info.continuous and config.algo != "a3c":
        raise NetworkChoiceError(f"{env_info.env_id} has continuous actions; only --algo a3c can act in them")
    heads = "actor_critic" if config.algo == "a3c" else "q"
    A = env_info.n_actions
    if config.network == "auto":   # images (C, H, W) of at least the 3×3 kernel to the conv net, the rest to the MLP
        shape = tuple(env_info.obs_shape)
        config = config.replace(network="conv" if len(shape) == 3 and min(shape[1:]) >= 3 else "mlp")
    if config.network in RECURRENT_NETWORKS and config.algo != "a3c":
        raise NetworkChoiceError(f"--network {config.network} is recurrent and only --algo a3c carries an LSTM "
                                 f"state; use --algo a3c, or a feed-forward network (mlp, conv, atari) with "
                                 f"--algo {config.algo}")
    if config.network in RECURRENT_NETWORKS and env_info.continuous:
        raise NetworkChoiceError(f"--network {config.network} with continuous actions ({env_info.env_id}) is not "
                                 f"supported: the Gaussian policy runs on feed-forward networks; use --network mlp")
    spec = _policy_spec(config, env_info, heads, A)
    if env_info.continuous:
        spec = replace(spec, heads="gaussian", action_low=tuple(env_info.action_low),
                       action_high=tuple(env_info.action_high))
    if env_info.action_start:
        spec = replace(spec, action_start=int(env_info.action_start))
    if config.separate_value:
        if config.algo != "a3c" or config.network != "mlp":
            raise NetworkChoiceError("--separate-value is for --algo a3c with --network mlp "
                                     "(a value tower beside the body)")
        spec = replace(spec, separate_value=True)
    return spec


def _policy_spec(config, env_info, heads, A):
    """The body :func:`network_spec` picks, with softmax or Q heads (a Gaussian head replaces them)."""
    if config.network == "atari-lstm":
        if tuple(env_info.obs_shape) != (4, 84, 84):
            raise ValueError(f"the atari-lstm network needs 4x84x84 frames; {env_info.env_id} gives "
                             f"{env_info.obs_shape}")
        return atari_lstm_spec(A, heads)
    if config.network == "lstm":
        spec = lstm_spec(int(np.prod(env_info.obs_shape)), A, config.hidden, config.activation, heads)
        return replace(spec, input_scale=env_info.input_scale, input_encoding=env_info.obs_encoding)
    if config.network == "atari":
        if tuple(env_info.obs_shape) != (4, 84, 84):
            raise ValueError(f"the atari network needs 4x84x84 frames; {env_info.env_id} gives {env_info.obs_shape}")
        return atari_spec(A, heads)
    if config.network == "conv":
        if len(env_info.obs_shape) != 3:
            raise ValueError(f"the conv network needs (channels, height, width) observations; "
                             f"{env_info.env_id} gives {env_info.obs_shape}. Use --network mlp")
        spec = small_conv_spec(env_info.obs_shape, A, heads, hidden=config.hidden[0] if config.hidden else 128)
        return replace(spec, input_scale=env_info.input_scale, input_encoding=env_info.obs_encoding)
    spec = mlp_spec(int(np.prod(env_info.obs_shape)), A, config.hidden, config.activation, heads)
    return replace(spec, input_scale=env_info.input_scale, input_encoding=env_info.obs_encoding)


def build_network(config, env_info):
    """The :class:`~numba_a3c.nn.network.Network` of :func:`network_spec` (its layout; no parameters yet)."""
    return Network(network_spec(config, env_info))


@dataclass(frozen=True)
class RunParts:
    """What a configuration builds before any thread starts: built once per command and read-only after."""

    config: TrainConfig
    env_info: EnvInfo
    network: Network

    def initial_state(self, theta=None) -> SharedState:
        """Fresh arrays for ``config.threads`` learners: θ (``theta``, or initialised from the seed
        with ``config.init``), θ⁻ = θ, zeroed optimiser statistics and counters, seeded RNGs; in
        shared memory when the workers will be processes (``env_processes``)."""
        state = new_shared_state(self.config, self.network, theta)
        if processes_wanted(self.config, self.env_info):
            from numba_a3c.worker_processes import share_state

            state = share_state(state)
        return state


def build_run(config, make_env=None):
    """The :class:`RunParts` of ``config`` (on ``make_env``'s environments when given); raises EnvError
    or ValueError (see :func:`numba_a3c.validation.check_environment` for the checked version with
    one-line messages)."""
    env_info = environment(config, make_env)
    return RunParts(config, env_info, build_network(config, env_info))
