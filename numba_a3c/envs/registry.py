"""Which environment an id means, what it looks like, and how to make one.

Three kinds of environment run the same learners:

* ``native``: implemented in Numba (:mod:`numba_a3c.envs.native`); the whole actor-learner loop,
  environment included, runs in nopython code with the GIL released.
* ``gym``: any registered gymnasium environment with a discrete or a Box action space (the
  latter for A3C's Gaussian policy; MuJoCo's through the optional extra ``numba_a3c[mujoco]``)
  and a Box observation. Its ``step`` is Python and holds the GIL, so its threads share one core for the
  environment part; the learner's kernels still run in parallel.
* ``atari``: ``ALE/<Game>-v5`` through ale-py, with the DeepMind preprocessing.

From Python (:func:`numba_a3c.train`) an environment can also be a zero-argument callable that
returns a ``gymnasium.Env`` (a class of the user's own, a wrapped environment): it runs as a
``gym`` one, and its id is ``python:<name>``, which says that no id can rebuild it
(:func:`describe_callable`).
"""

import difflib

import numpy as np

from numba_a3c.envs.base import (
    FLATTEN,
    EnvError,
    EnvInfo,
    box_input,
    encode_observation,
    flatten_encoding,
    flatten_observation,
    parse_env_kwargs,
)


def _native_specs():
    from numba_a3c.envs.native import NATIVE_ENVS

    return NATIVE_ENVS


def _gym_ids():
    import gymnasium

    return sorted(gymnasium.envs.registry.keys())


CALLABLE_PREFIX = "python:"


def callable_env_id(make_env):
    """``python:<name>``: the id a run of ``make_env`` is saved under (its class or function name)."""
    name = getattr(make_env, "__qualname__", None) or type(make_env).__name__
    return CALLABLE_PREFIX + name


def _describe_spaces(env, env_id):
    """(observation shape, number of actions, observation encoding, input scale) of a gymnasium
    environment, or :class:`EnvError`. A Discrete(n) observation space is one-hot encoded: shape
    (n,), "one-hot"; a Box is read by :func:`numba_a3c.envs.base.box_input` (images to (C, H, W));
    a Tuple, Dict, MultiDiscrete or MultiBinary one becomes one vector (``flatten_encoding``)."""
    import gymnasium

    obs_space, act_space = env.observation_space, env.action_space
    if isinstance(act_space, gymnasium.spaces.Box):
        n_actions = int(np.prod(act_space.shape))
    elif isinstance(act_space, gymnasium.spaces.Discrete):
        n_actions = int(act_space.n)
    else:
        raise EnvError(f"{env_id} has a {type(act_space).__name__} action space; these methods need "
                       f"discrete actions (gymnasium.spaces.Discrete) or continuous ones (a Box, A3C only)")
    if isinstance(obs_space, gymnasium.spaces.Discrete):
        return (int(obs_space.n),), n_actions, "one-hot", 1.0
    if not isinstance(obs_space, gymnasium.spaces.Box):
        try:
            encoding, size = flatten_encoding(obs_space)
        except ValueError as exc:
            raise EnvError(f"{env_id} has a {type(obs_space).__name__} observation space with {exc}") from None
        return (size,), n_actions, encoding, 1.0
    shape, encoding, scale = box_input(obs_space.shape, obs_space.dtype, obs_space.high)
    return shape, n_actions, encoding, scale


def _action_fields(env):
    """The :class:`EnvInfo` fields of ``env``'s action space: ``dict(action_low=…, action_high=…)``
    of a Box (flattened, floats); ``dict(action_start=s)`` of a Discrete one whose actions are
    s … s + n − 1 (s ≠ 0); else ``{}``."""
    import gymnasium

    space = env.action_space
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"action_start": int(space.start)} if int(space.start) else {}
    if not isinstance(space, gymnasium.spaces.Box):
        return {}
    return dict(action_low=tuple(float(x) for x in np.asarray(space.low, np.float64).ravel()),
                action_high=tuple(float(x) for x in np.asarray(space.high, np.float64).ravel()))


MUJOCO_EXTRA = "pip install 'numba_a3c[mujoco]'"
BOX2D_EXTRA = "pip install 'numba_a3c[box2d]'"


def _needs_extra(spec, exc, family, *packages):
    """True when making a gymnasium environment of ``family`` (its entry point's module: "mujoco",
    "box2d") failed because one of ``packages`` is not installed (an ImportError, or an error that
    names one: gymnasium's DependencyNotInstalled)."""
    entry = str(getattr(spec, "entry_point", ""))
    text = f"{type(exc).__name__} {exc}".lower()
    return family in entry and (isinstance(exc, ImportError) or any(p in text for p in packages))


def describe_callable(make_env):
    """An :class:`EnvInfo` for the environments ``make_env()`` returns (kind ``gym``, id
    ``python:<name>``); calls it once to read the spaces. Raises :class:`EnvError` when it is not
    callable, fails, or returns something that is not a usable ``gymnasium.Env``."""
    import gymnasium

    if not callable(make_env):
        raise EnvError(f"env {make_env!r}: give an environment id or a zero-argument callable that returns a "
                       f"gymnasium.Env (e.g. a class, or lambda: MyWrapper(MyEnv()))")
    env_id = callable_env_id(make_env)
    try:
        env = make_env()
    except Exception as exc:  # noqa: BLE001 - any failure to build it is the user's to know
        raise EnvError(f"could not create the environment: {env_id}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(env, gymnasium.Env):
        raise EnvError(f"{env_id}() returned a {type(env).__name__}, not a gymnasium.Env")
    try:
        obs_shape, n_actions, encoding, scale = _describe_spaces(env, env_id)
        spec = getattr(env, "spec", None)
        steps = spec.max_episode_steps if spec is not None and spec.max_episode_steps else 0
        return EnvInfo(env_id, "gym", obs_shape, n_actions, max_episode_steps=int(steps), maker=make_env,
                       obs_encoding=encoding, input_scale=scale, **_action_fields(env))
    finally:
        env.close()


def describe_env(env_id, force_gym=False, env_kwargs=()):
    """An :class:`EnvInfo` for ``env_id``; raises :class:`EnvError` for unknown or unusable ids.

    ``env_id`` may be gymnasium's ``module:Env-id`` (the module is imported first, which registers
    its ids, as ``gymnasium.make`` does); ``env_kwargs`` ("KEY=VALUE" strings) go to
    ``gymnasium.make`` for gymnasium environments, and set the emulator of an ``ALE/`` id
    (:func:`numba_a3c.envs.atari.atari_settings`); native environments take none.
    """
    if env_id.startswith(CALLABLE_PREFIX):
        raise EnvError(f"{env_id} was made by a Python callable in the script that trained it; no id can "
                       f"rebuild it. From Python: numba_a3c.load(path).evaluate(env=...) with that callable "
                       f"or an instance")
    natives = _native_specs()
    make_kwargs = parse_env_kwargs(env_kwargs)
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        _import_env_module(module)
    elif make_kwargs and env_id in natives and not force_gym:
        raise EnvError(f"--env-kwargs are passed to gymnasium.make; {env_id} is the native (Numba) environment "
                       "here, which takes none (train with --gym for gymnasium's version)")
    if env_id in natives and not force_gym:
        s = natives[env_id]
        return EnvInfo(env_id, "native", tuple(s.obs_shape), int(s.n_actions), int(s.env_id), 1.0,
                       int(s.max_episode_steps), action_low=tuple(s.action_low), action_high=tuple(s.action_high))
    if env_id.startswith("ALE/"):
        from numba_a3c.envs.atari import describe_atari

        return describe_atari(env_id, make_kwargs)
    import gymnasium

    from numba_a3c.envs.atari import legacy_atari_hint

    ids = _gym_ids()
    spec = gymnasium.registry.get(env_id)
    if spec is None or "ale_py" in str(spec.entry_point):
        # An Atari id without ALE/ (PongNoFrameskip-v4): also when ale-py registered it, since its raw
        # 210x160 frames would train badly; Blackjack-v1 and the like stay gymnasium's own.
        legacy = legacy_atari_hint(env_id)
        if legacy:
            raise EnvError(legacy)
    if env_id not in ids:
        if env_id in natives:
            raise EnvError(f"{env_id} has no gymnasium version; drop --gym to use the native one")
        close = difflib.get_close_matches(env_id, sorted(set(ids) | set(natives)), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise EnvError(f"unknown environment {env_id!r}.{hint} Use a native id "
                       f"({', '.join(natives)}), a registered gymnasium id, or ALE/<Game>-v5.")
    try:
        env = gymnasium.make(env_id, **dict(make_kwargs))
    except Exception as exc:  # noqa: BLE001 - any failure to build it is the user's to know
        if _needs_extra(spec, exc, "mujoco", "mujoco"):
            missing = getattr(exc, "name", None)
            if isinstance(exc, ImportError) and missing and not missing.startswith("mujoco"):
                # MuJoCo itself is there, but not the rest of the extra (a bare `pip install mujoco`)
                raise EnvError(f"{env_id} needs {missing}, part of the MuJoCo extra, which is not installed: "
                               f"{MUJOCO_EXTRA}") from None
            raise EnvError(f"{env_id} needs MuJoCo, which is not installed: {MUJOCO_EXTRA}") from None
        if _needs_extra(spec, exc, "box2d", "box2d", "pygame"):
            raise EnvError(f"{env_id} needs Box2D, which is not installed: {BOX2D_EXTRA}") from None
        raise EnvError(f"could not create {env_id}{_kwargs_text(make_kwargs)}: {type(exc).__name__}: {exc}") from None
    try:
        obs_shape, n_actions, encoding, scale = _describe_spaces(env, env_id)
        steps = env.spec.max_episode_steps if env.spec is not None and env.spec.max_episode_steps else 0
        return EnvInfo(env_id, "gym", obs_shape, n_actions, max_episode_steps=int(steps), obs_encoding=encoding,
                       make_kwargs=make_kwargs, input_scale=scale, **_action_fields(env))
    finally:
        env.close()


def _import_env_module(module):
    """Import the module of a ``module:Env-id`` (its import registers the environment)."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised, the user must see it in one line
        raise EnvError(f"could not import {module!r} (the module of {module}:<Env-id>): "
                       f"{type(exc).__name__}: {exc}") from None


def _kwargs_text(pairs):
    return f" with {', '.join(f'{k}={v!r}' for k, v in pairs)}" if pairs else ""


def make_python_env(info, seed=None, render=False):
    """A Python-stepped environment for ``info``: gymnasium's, or the native one's Python wrapper.

    ``render=True`` asks gymnasium for ``render_mode="rgb_array"`` so that ``render()`` returns
    frames (native environments always can), and Atari for the colour screen. An environment described by
    :func:`describe_callable` is made by its callable (its own render mode applies).
    """
    if info.maker is not None:
        return encoded_observations(info.maker(), info)
    if info.kind == "native":
        from numba_a3c.envs.native import NativeEnv

        return NativeEnv(info.env_id, seed=0 if seed is None else seed)
    if info.kind == "atari":
        from numba_a3c.envs.atari import make_atari_env

        return make_atari_env(info.env_id, seed=seed, colour=render, make_kwargs=info.make_kwargs)
    import gymnasium

    kwargs = dict(info.make_kwargs)
    if render:   # only then: an environment class need not take render_mode at all
        kwargs["render_mode"] = "rgb_array"
    return encoded_observations(gymnasium.make(info.env_id, **kwargs), info)


def encoded_observations(env, info):
    """``env`` giving its observations as the network reads them (``info.obs_encoding``): one-hot
    vectors for a Discrete space (:func:`one_hot_observations`), (C, H, W) images for (H, W, C) ones
    (:func:`channels_first_observations`), one vector for a composite space
    (:func:`flat_observations`), else ``env`` itself; and a Discrete action space that starts at
    s ≠ 0 taking the network's action k as k + s (:func:`zero_based_actions`)."""
    if info.action_start:
        env = zero_based_actions(env, info.action_start)
    if info.obs_encoding.startswith(FLATTEN):
        return flat_observations(env, info.obs_encoding, int(np.prod(info.obs_shape)))
    if info.obs_encoding == "one-hot":
        return one_hot_observations(env)
    if info.obs_encoding == "hwc":
        return channels_first_observations(env)
    return env


def zero_based_actions(env, start):
    """``env`` taking actions 0 … n − 1, which it receives as start … start + n − 1 (the network's
    outputs are indexed from 0; gymnasium's Discrete(n, start) is not)."""
    import gymnasium

    space = gymnasium.spaces.Discrete(int(env.action_space.n))
    return gymnasium.wrappers.TransformAction(env, lambda k: int(k) + int(start), space)


def channels_first_observations(env):
    """``env`` with its (H, W, C) image observations given as (C, H, W) arrays of the same dtype
    (the scale, 1/255 for pixels, is the network's ``input_scale``)."""
    import gymnasium

    box = env.observation_space
    space = gymnasium.spaces.Box(np.transpose(box.low, (2, 0, 1)), np.transpose(box.high, (2, 0, 1)),
                                 dtype=box.dtype)
    return gymnasium.wrappers.TransformObservation(env, lambda obs: encode_observation(obs, "hwc", None), space)


def flat_observations(env, encoding, size):
    """``env`` with its Tuple, Dict, MultiDiscrete or MultiBinary observations given as one float32
    vector of ``size`` numbers (:func:`numba_a3c.envs.base.flatten_observation` with ``encoding``):
    discrete parts one-hot, numeric parts as they are."""
    import gymnasium

    space = gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float32)
    return gymnasium.wrappers.TransformObservation(env, lambda obs: flatten_observation(obs, encoding), space)


def one_hot_observations(env):
    """``env`` with its Discrete(n) observations k given as float32 one-hot vectors e_k (a Box of
    shape (n,)): a state index carries no order or scale, so the network sees one input per state."""
    import gymnasium

    n = int(env.observation_space.n)
    eye = np.eye(n, dtype=np.float32)
    space = gymnasium.spaces.Box(0.0, 1.0, (n,), np.float32)
    return gymnasium.wrappers.TransformObservation(env, lambda k: eye[int(k)], space)

