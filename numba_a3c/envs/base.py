"""What every kind of environment shares: its description, its error, and how an observation
becomes a network input.

:mod:`numba_a3c.envs.registry` (which id means which environment) and
:mod:`numba_a3c.envs.atari` (ALE games) both build on this module and on nothing of each other's
types, so the environment package imports one way: ``base`` ← ``native``/``atari`` ← ``registry``.
"""

import functools
import json
from dataclasses import dataclass

import numpy as np


class EnvError(ValueError):
    """An environment id that cannot be used, with a message that says what to do."""


@dataclass(frozen=True)
class EnvInfo:
    """What the learners need to know of an environment, and enough to make one
    (:func:`numba_a3c.envs.registry.make_python_env`, or ``native_id`` for the Numba ones)."""

    env_id: str
    kind: str               # "native", "gym" or "atari"
    obs_shape: tuple
    n_actions: int
    native_id: int = -1     # ENV_* constant of a native environment
    input_scale: float = 1.0
    max_episode_steps: int = 0
    obs_encoding: str = ""  # "one-hot": a Discrete(n) observation k is given to the network as e_k ∈ {0,1}ⁿ;
    #                         "hwc": an image (H, W, C) is given to it transposed, (C, H, W);
    #                         "flatten:[…]": a Tuple, Dict, MultiDiscrete or MultiBinary observation is given
    #                         as one vector, its parts in order (flatten_encoding; encode_observation)
    make_kwargs: tuple = ()  # ((key, value), …) passed to gymnasium.make (--env-kwargs)
    maker: object = None    # a zero-argument callable that returns the gymnasium.Env (Python API), else None
    action_low: tuple = ()  # a Box action space's bounds per dimension (n_actions is then its dimension D);
    action_high: tuple = ()  # () for discrete actions
    action_start: int = 0   # a Discrete(n, start) action space's start: the network's action k is sent as k + start

    @property
    def continuous(self):
        """True for a Box action space (A3C's Gaussian policy), False for a discrete one."""
        return len(self.action_low) > 0


def flat_observation(obs, scale, out):
    """Write an observation, flattened and scaled, into the float32 row ``out``: x = scale · obs."""
    np.multiply(np.asarray(obs).reshape(-1), scale, out=out, casting="unsafe")


def channels_last(shape):
    """Whether a 3-D image shape (a, b, c) is (height, width, channels): its last axis has at most 4
    entries (grey, RGB, RGBA, a stack of 4 frames) and its first is not a single channel. Otherwise
    it is read as (channels, height, width), as (4, 84, 84) and (1, 10, 5) are. A shape that fits
    both, such as (3, 3, 3) or (2, 8, 3), is channels-last: gymnasium's convention for images
    (``render()``, ``AtariPreprocessing``, MiniGrid)."""
    a, _, c = shape
    return c <= 4 and a != 1


def box_input(shape, dtype, high):
    """(network input shape, encoding, input scale) of a Box observation space:

    * (n,) and any shape of 4 or more axes: as they are (the MLP flattens them);
    * (H, W): one grey channel, (1, H, W) (the same numbers in the same order);
    * (H, W, C) (:func:`channels_last`): transposed to (C, H, W), encoding "hwc"; (C, H, W) as it is;
    * scale 1/255 for uint8 observations that reach 255 (pixels), else 1: x = scale · obs.
    """
    shape = tuple(int(s) for s in shape)
    scale = 1.0 / 255.0 if np.dtype(dtype) == np.uint8 and np.max(high) >= 255 else 1.0
    if len(shape) == 2:
        return (1, *shape), "", scale
    if len(shape) == 3 and channels_last(shape):
        h, w, c = shape
        return (c, h, w), "hwc", scale
    return shape, "", scale


FLATTEN = "flatten:"


def flatten_encoding(space):
    """The encoding that gives a composite observation space's observations to the network as one
    float32 vector: ``"flatten:"`` followed by the JSON list of its parts, in order, each
    ``[path, kind, size, start]``. ``path`` leads from the observation to the part (an int indexes
    a tuple, or the flattened array of a MultiDiscrete; a string is a Dict key); a ``"discrete"``
    part (Discrete, or one entry of a MultiDiscrete) is one-hot encoded, value k as e_(k − start) of
    length ``size``; a ``"box"`` part (Box, MultiBinary) gives its ``size`` numbers as they are,
    flattened row-major. Tuple and Dict spaces nest (Dict keys in the space's own order), so
    Blackjack's Tuple(Discrete(32), Discrete(11), Discrete(2)) is a vector of 32 + 11 + 2 = 45.
    Returns ``(encoding, size)``; raises :class:`ValueError` for a part it cannot encode (Text,
    Graph, Sequence …), naming it."""
    parts = []
    _flatten_parts(space, [], parts)
    return FLATTEN + json.dumps(parts, separators=(",", ":")), sum(part[2] for part in parts)


def _flatten_parts(space, path, parts):
    import gymnasium.spaces as spaces

    if isinstance(space, spaces.Discrete):
        parts.append([path, "discrete", int(space.n), int(space.start)])
    elif isinstance(space, spaces.MultiDiscrete):
        starts = np.broadcast_to(getattr(space, "start", 0), space.nvec.shape).ravel()
        for j, (n, start) in enumerate(zip(space.nvec.ravel(), starts)):
            parts.append([path + [j], "discrete", int(n), int(start)])
    elif isinstance(space, (spaces.Box, spaces.MultiBinary)):
        parts.append([path, "box", int(np.prod(space.shape)), 0])
    elif isinstance(space, spaces.Tuple):
        for j, sub in enumerate(space.spaces):
            _flatten_parts(sub, path + [j], parts)
    elif isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            _flatten_parts(sub, path + [str(key)], parts)
    else:
        where = "".join(f"[{k!r}]" for k in path) or " (the whole observation)"
        raise ValueError(f"a {type(space).__name__} part{where}: these methods read Box, Discrete, "
                         f"MultiDiscrete and MultiBinary parts, in Tuple or Dict spaces")


@functools.lru_cache(maxsize=64)
def _flatten_plan(encoding):
    parts = json.loads(encoding[len(FLATTEN):])
    return tuple((tuple(path), kind, size, start) for path, kind, size, start in parts), sum(p[2] for p in parts)


def flatten_observation(obs, encoding):
    """A composite observation as the float32 vector ``encoding`` (:func:`flatten_encoding`) describes."""
    plan, size = _flatten_plan(encoding)
    out = np.zeros(size, np.float32)
    k = 0
    for path, kind, n, start in plan:
        value = obs
        for key in path:
            value = value[key] if isinstance(value, (tuple, list, dict)) else np.asarray(value).reshape(-1)[key]
        if kind == "discrete":
            index = int(np.asarray(value).reshape(-1)[0]) - start
            if not 0 <= index < n:
                raise ValueError(f"observation part {list(path)}: value {index + start} is outside "
                                 f"[{start}, {start + n})")
            out[k + index] = 1.0
        else:
            out[k:k + n] = np.asarray(value, np.float32).reshape(-1)
        k += n
    return out


def encode_observation(obs, encoding, input_shape):
    """An environment's raw observation as the network reads it (before ``input_scale``): the state
    index k of a Discrete(n) space as e_k (encoding "one-hot"), an (H, W, C) image as (C, H, W)
    ("hwc"), a Tuple, Dict, MultiDiscrete or MultiBinary one as one vector ("flatten:…",
    :func:`flatten_observation`), anything else as it is."""
    if encoding.startswith(FLATTEN):
        return flatten_observation(obs, encoding)
    if encoding == "one-hot":
        out = np.zeros(input_shape, np.float32)
        out[int(np.asarray(obs).reshape(-1)[0])] = 1.0
        return out
    if encoding == "hwc":
        return np.ascontiguousarray(np.transpose(np.asarray(obs), (2, 0, 1)))
    return obs


def parse_env_kwargs(items):
    """``("map_name=8x8", "is_slippery=false", …)`` → ``(("map_name", "8x8"), ("is_slippery", False), …)``.

    A value is read as JSON where it can be (numbers, true/false/null, quoted strings, lists),
    else taken as the string it is. Raises :class:`EnvError` for an item without ``=``.
    """
    import json

    pairs = []
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise EnvError(f"--env-kwargs takes KEY=VALUE items (e.g. map_name=8x8 is_slippery=false); got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = {"True": True, "False": False, "None": None}.get(text, text)
        pairs.append((key.strip(), value))
    return tuple(pairs)
