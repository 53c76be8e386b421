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
    obs_encoding: str = ""  # "one-hot": a Discrete(n) observation k is given to the network as e_k ∈ {0,1}ⁿ
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
