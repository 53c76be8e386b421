"""numba_a3c: the asynchronous RL methods of Mnih et al. (2016) on CPU threads, in Numba.

Asynchronous one-step Q-learning, one-step Sarsa, n-step Q-learning and advantage actor-critic
(A3C), with networks, backpropagation and optimisers written as Numba nopython kernels over one
flat, shared float32 parameter array, updated lock-free (Hogwild) by worker threads that release
the GIL.
"""

__version__ = "0.1.0"

# The Python API (docs/python-api.md), imported on first use (PEP 562): ``import numba_a3c`` stays light
# for ``asyncrl --help``, and the package module itself imports none of its modules.
_EXPORTS = {"Agent": "api", "Run": "api", "configure": "api", "load": "api", "train": "api",
            "TrainConfig": "config", "ConfigError": "validation"}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'numba_a3c' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"numba_a3c.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
