"""numba_a3c: the asynchronous RL methods of Mnih et al. (2016) on CPU threads, in Numba.

Asynchronous one-step Q-learning, one-step Sarsa, n-step Q-learning and advantage actor-critic
(A3C), with networks, backpropagation and optimisers written as Numba nopython kernels over one
flat, shared float32 parameter array, updated lock-free (Hogwild) by worker threads that release
the GIL.
"""

__version__ = "0.1.0"

from numba_a3c.api import Agent, Run, configure, load, train  # noqa: E402 - the Python API, after __version__
from numba_a3c.config import TrainConfig  # noqa: E402
from numba_a3c.validation import ConfigError  # noqa: E402

__all__ = ["Agent", "ConfigError", "Run", "TrainConfig", "configure", "load", "train", "__version__"]
