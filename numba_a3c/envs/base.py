"""What every kind of environment shares: its description, its error, and how an observation
becomes a network input.

:mod:`numba_a3c.envs.registry` (which id means which environment) and
:mod:`numba_a3c.envs.atari` (ALE games) both build on this module and on nothing of each other's
types, so the environment package imports one way: ``base`` ← ``native``/``atari`` ← ``registry``.
"""

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
    #                         "hwc": an image (H, W, C) is given to it transposed, (C, H, W) (encode_observation)
    make_kwargs: tuple = ()  # ((key, value), …) passed to gymnasium.make (--env-kwargs)
    maker: object = None    # a zero-argument callable that returns the gymnasium.Env (Python API), else None
    action_low: tuple = ()  # a Box action space's bounds per dimension (n_actions is then its dimension D);
    action_high: tuple = ()  # () for discrete actions

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


def encode_observation(obs, encoding, input_shape):
    """An environment's raw observation as the network reads it (before ``input_scale``): the state
    index k of a Discrete(n) space as e_k (encoding "one-hot"), an (H, W, C) image as (C, H, W)
    ("hwc"), anything else as it is."""
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
