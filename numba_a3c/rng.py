"""A small, checkpointable random number generator for nopython code.

Every worker thread owns one generator state: a ``uint64[2]`` array holding the state of
xoroshiro128+ (Blackman & Vigna, 2016). Keeping the state in a plain array (rather than in
Numba's hidden per-thread NumPy generator) makes it private to its thread, cheap, deterministic
for a given seed, and saveable in a checkpoint so a resumed run continues the same stream.

All functions here are ``@njit(nogil=True, cache=True)``; constants are typed ``np.uint64`` so the
arithmetic never silently goes through float64.
"""

import numpy as np

from numba_a3c.jit import njit

_U1 = np.uint64(1)
_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SPLITMIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
_SPLITMIX_M2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53


@njit(nogil=True, cache=True)
def _splitmix64(x):
    """One step of SplitMix64; returns (new_state, output). Used only for seeding."""
    x = x + _SPLITMIX_GAMMA
    z = x
    z = (z ^ (z >> np.uint64(30))) * _SPLITMIX_M1
    z = (z ^ (z >> np.uint64(27))) * _SPLITMIX_M2
    z = z ^ (z >> np.uint64(31))
    return x, z


@njit(nogil=True, cache=True)
def rng_seed(state, seed):
    """Seed ``state`` (uint64[2]) from an integer seed with SplitMix64, as the xoroshiro authors advise."""
    x = np.uint64(seed)
    x, a = _splitmix64(x)
    x, b = _splitmix64(x)
    if a == 0 and b == 0:
        a = _U1
    state[0] = a
    state[1] = b


def new_rng(seed):
    """A fresh generator state (uint64[2]) seeded with ``seed`` (Python helper)."""
    state = np.zeros(2, dtype=np.uint64)
    rng_seed(state, np.uint64(seed % (1 << 64)))
    return state


@njit(nogil=True, cache=True)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(nogil=True, cache=True)
def rng_next(state):
    """Next raw 64-bit output of xoroshiro128+ (advances ``state`` in place)."""
    s0 = state[0]
    s1 = state[1]
    result = s0 + s1
    s1 = s1 ^ s0
    state[0] = _rotl(s0, 24) ^ s1 ^ (s1 << np.uint64(16))
    state[1] = _rotl(s1, 37)
    return result


@njit(nogil=True, cache=True)
def rng_uniform(state):
    """A float64 uniform on [0, 1) from the top 53 bits."""
    return float(rng_next(state) >> np.uint64(11)) * _INV_2_53


@njit(nogil=True, cache=True)
def rng_uniform_range(state, low, high):
    """A float64 uniform on [low, high)."""
    return low + (high - low) * rng_uniform(state)


@njit(nogil=True, cache=True)
def rng_integer(state, n):
    """An integer uniform on {0, …, n−1} (n ≥ 1), by scaling a 53-bit uniform (bias below n / 2**53)."""
    return int(rng_uniform(state) * n)


@njit(nogil=True, cache=True)
def rng_normal(state):
    """A standard normal float64 (Box–Muller, one of the pair)."""
    u1 = rng_uniform(state)
    while u1 <= 0.0:
        u1 = rng_uniform(state)
    u2 = rng_uniform(state)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@njit(nogil=True, cache=True)
def rng_categorical(state, probs, n):
    """Sample an index from the first ``n`` entries of ``probs`` (non-negative, summing to ~1).

    Rounding can leave the cumulative sum a little under 1; the last index with non-zero
    probability takes what is left, so the result is always a valid index.
    """
    u = rng_uniform(state)
    c = 0.0
    last = 0
    for i in range(n):
        p = probs[i]
        if p > 0.0:
            last = i
        c += p
        if u < c:
            return i
    return last
