"""numba_a3c: the asynchronous RL methods of Mnih et al. (2016) on CPU threads, in Numba.

Asynchronous one-step Q-learning, one-step Sarsa, n-step Q-learning and advantage actor-critic
(A3C), with networks, backpropagation and optimisers written as Numba nopython kernels over one
flat, shared float32 parameter array, updated lock-free (Hogwild) by worker threads that release
the GIL.
"""

__version__ = "0.1.0"
