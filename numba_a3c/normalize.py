"""Running normalisation of observations and rewards, for environments nobody tuned (issue 14).

An untuned environment can hand the network observations of any scale and rewards whose returns
run into the hundreds; the value head then chases targets it cannot reach and blows up. Two
running statistics, both off unless asked for (``--normalize-obs``, ``--normalize-reward``; the
generic preset ``default.json`` turns both on, the presets of the environments this package was
tuned on leave them off), make the inputs and the targets of order one:

**Observations** (vector observations only: an image, a one-hot encoded state or an observation
scaled by ``input_scale`` ≠ 1 is left as it is, see :func:`applies_to`). Every observation x the
environment returns (after a reset and after each step) first updates the running mean and
variance of each component, with Welford's update written on the variance,

    n ← n + 1;   d = x − μ;   μ ← μ + d / n;   σ² ← σ² + (d · (x − μ) − σ²) / n

(μ on the right of the last line is the updated mean; σ² is the population variance of the n
observations seen), and is then replaced, as the network reads it, by

    x̂ = clip((x − μ) / √(σ² + ε), −c, c),   ε = 1e-8,  c = OBS_CLIP = 5.

**Rewards** (SB3's VecNormalize): each thread keeps the discounted return of its current episode,
R ← γ R + r (R ← 0 after the episode's last step), which updates a running mean and variance σ_R²
of R as above; the learner is given r̂ = clip(r / √(σ_R² + ε), −c_r, c_r), c_r = REWARD_CLIP = 10,
in place of r. The value head then learns returns in units of σ_R. The logged episode returns, the
evaluations and ``--reward-clip`` (applied after this) see the raw rewards.

Evaluation, ``asyncrl eval``, ``Agent.act`` and the standalone NumPy reader apply the same x̂ with
the statistics frozen (:func:`normalize_frozen`); they are saved in the checkpoint's
``/normalizer`` group (docs/checkpoint-format.md) and restored on ``--resume``.

Threads (see :mod:`numba_a3c.workers`)
    Shared by all threads and written WITHOUT locks: ``stats`` (float64: the counts, means and
    variances of both statistics, laid out by the ``S_*`` indices). Two threads that update at the
    same moment can lose one observation's weight (n counts it once) or mix one component's
    update with another's; the statistics stay finite and close to the true ones (a negative
    variance from such a mix is read as 0). Read only: ``config``.
    Private to each thread: its row of ``ret`` (the discounted return R of its episode).
A one-thread run is deterministic: its updates happen in one order.
"""

from collections import namedtuple

import numpy as np

from numba_a3c.algorithms.state import VS_COUNT, VS_MEAN, VS_SECOND, VS_SIZE
from numba_a3c.jit import njit

OBS_CLIP = 5.0          # c: a normalised observation component lies in [−c, c]
REWARD_CLIP = 10.0      # c_r: a scaled reward lies in [−c_r, c_r]
EPSILON = 1e-8          # ε inside the square roots

# config: float64, read only.
NC_OBS = 0              # 1: normalise observations
NC_REWARD = 1           # 1: scale rewards
NC_GAMMA = 2            # γ of the discounted return R
NC_OBS_CLIP = 3
NC_REWARD_CLIP = 4
NC_EPSILON = 5
NC_SIZE = 6

# stats: float64, shared; the observation statistics of D components follow S_SIZE.
S_OBS_COUNT = 0         # n, observations seen
S_RET_COUNT = 1         # returns R seen (one per step)
S_RET_MEAN = 2          # running mean of R
S_RET_VAR = 3           # running variance σ_R² of R
S_SIZE = 4              # then μ (D values), then σ² (D values)

# One thread's view: the shared stats and config, and its own (1,) row of ret.
Normalizer = namedtuple("Normalizer", ["stats", "config", "ret"])


def applies_to(spec):
    """True when observations of this network can be normalised: vectors given as they are
    (input_encoding "", input_scale 1), not images, one-hot states nor flattened composite observations."""
    return len(spec.input_shape) == 1 and spec.input_encoding == "" and float(spec.input_scale) == 1.0


def new_arrays(config, spec, threads):
    """(stats, config array, ret (threads, 1)) for a run; observation statistics only where
    :func:`applies_to` the network and ``config.normalize_obs`` asks for them."""
    obs = bool(getattr(config, "normalize_obs", False)) and applies_to(spec)
    D = int(spec.input_shape[0]) if obs else 0
    stats = np.zeros(S_SIZE + 2 * D, np.float64)
    stats[S_SIZE + D:] = 1.0            # σ² before any observation: x̂ = x (the first observation sets it to 0)
    cfg = np.zeros(NC_SIZE, np.float64)
    cfg[NC_OBS] = 1.0 if obs else 0.0
    cfg[NC_REWARD] = 1.0 if getattr(config, "normalize_reward", False) else 0.0
    cfg[NC_GAMMA] = config.gamma
    cfg[NC_OBS_CLIP] = OBS_CLIP
    cfg[NC_REWARD_CLIP] = REWARD_CLIP
    cfg[NC_EPSILON] = EPSILON
    return stats, cfg, np.zeros((int(threads), 1), np.float64)


def obs_dim(stats):
    """D, the number of observation components the statistics hold (0: observations not normalised)."""
    return (stats.shape[0] - S_SIZE) // 2


@njit(nogil=True, cache=True, error_model="numpy")
def _welford(s, mean_at, var_at, x, n):
    """The n-th sample x into the running mean s[mean_at] and variance s[var_at] (the module
    docstring's update): μ ← μ + d/n, σ² ← σ² + (d·(x − μ_new) − σ²)/n with d = x − μ_old."""
    d = x - s[mean_at]
    mean = s[mean_at] + d / n
    s[mean_at] = mean
    s[var_at] += (d * (x - mean) - s[var_at]) / n


@njit(nogil=True, cache=True, error_model="numpy")
def normalize_observation(N, x):
    """Update the shared observation statistics with ``x`` (float32, D values), then replace ``x``
    by x̂ = clip((x − μ) / √(σ² + ε), −c, c) in place. Does nothing when observations are not
    normalised."""
    if N.config[NC_OBS] == 0.0:
        return
    s = N.stats
    D = (s.shape[0] - S_SIZE) // 2
    n = s[S_OBS_COUNT] + 1.0
    s[S_OBS_COUNT] = n
    for i in range(D):
        _welford(s, S_SIZE + i, S_SIZE + D + i, np.float64(x[i]), n)
    normalize_frozen(s, N.config[NC_OBS_CLIP], N.config[NC_EPSILON], x)


@njit(nogil=True, cache=True, error_model="numpy")
def normalize_frozen(stats, clip, eps, x):
    """x ← clip((x − μ) / √(σ² + ε), −clip, clip) with the statistics as they are (no update)."""
    D = (stats.shape[0] - S_SIZE) // 2
    for i in range(D):
        var = max(stats[S_SIZE + D + i], 0.0)
        z = (np.float64(x[i]) - stats[S_SIZE + i]) / np.sqrt(var + eps)
        x[i] = min(max(z, -clip), clip)


@njit(nogil=True, cache=True, error_model="numpy")
def scale_reward(N, r, episode_over):
    """The reward the learner is given: r itself, or with reward scaling R ← γ R + r (the thread's
    discounted return, which updates the shared σ_R²), then clip(r / √(σ_R² + ε), −c_r, c_r);
    R ← 0 when ``episode_over``."""
    if N.config[NC_REWARD] == 0.0:
        return r
    s = N.stats
    R = N.config[NC_GAMMA] * N.ret[0] + r
    N.ret[0] = 0.0 if episode_over else R
    n = s[S_RET_COUNT] + 1.0
    s[S_RET_COUNT] = n
    _welford(s, S_RET_MEAN, S_RET_VAR, R, n)
    c = N.config[NC_REWARD_CLIP]
    return min(max(r / np.sqrt(max(s[S_RET_VAR], 0.0) + N.config[NC_EPSILON]), -c), c)


def reward_scale(stats, config):
    """1 / √(σ_R² + ε), what reward scaling multiplies rewards by now (clip aside), or 1 when off."""
    if stats is None or config[NC_REWARD] == 0.0:
        return 1.0
    return float(1.0 / np.sqrt(max(stats[S_RET_VAR], 0.0) + config[NC_EPSILON]))


class FrozenObservations:
    """The observation normalisation of a saved or running policy, with its statistics fixed:
    ``apply(x)`` normalises a flat float32 observation in place, as training did."""

    def __init__(self, mean, var, clip=OBS_CLIP, eps=EPSILON, count=0.0):
        D = len(mean)
        self.stats = np.zeros(S_SIZE + 2 * D, np.float64)
        self.stats[S_OBS_COUNT] = count
        self.stats[S_SIZE:S_SIZE + D] = mean
        self.stats[S_SIZE + D:] = var
        self.clip = float(clip)
        self.eps = float(eps)

    @classmethod
    def from_stats(cls, stats, config):
        """A snapshot of a run's shared statistics, or None when observations are not normalised."""
        if config[NC_OBS] == 0.0:
            return None
        D = obs_dim(stats)
        s = stats.copy()
        return cls(s[S_SIZE:S_SIZE + D], s[S_SIZE + D:], config[NC_OBS_CLIP], config[NC_EPSILON], s[S_OBS_COUNT])

    def apply(self, x):
        normalize_frozen(self.stats, self.clip, self.eps, x)
        return x



# The checkpoint's /normalizer group (docs/checkpoint-format.md): attribute name → stats or config index.
GROUP_STATS = {"obs_count": S_OBS_COUNT, "return_count": S_RET_COUNT, "return_mean": S_RET_MEAN,
               "return_var": S_RET_VAR}
GROUP_CONFIG = {"gamma": NC_GAMMA, "obs_clip": NC_OBS_CLIP, "reward_clip": NC_REWARD_CLIP, "epsilon": NC_EPSILON}


def write_group(group, stats, config, ret):
    """Write a run's statistics (``stats``, ``config``, ``ret`` as in :func:`new_arrays`) into an
    h5py group, readably named: attrs observations, rewards, the GROUP_CONFIG and GROUP_STATS
    values; datasets obs_mean, obs_var (D,) and thread_return (threads,)."""
    s = stats.copy()
    D = obs_dim(s)
    group.attrs["observations"] = bool(config[NC_OBS])
    group.attrs["rewards"] = bool(config[NC_REWARD])
    for name, k in GROUP_CONFIG.items():
        group.attrs[name] = float(config[k])
    for name, k in GROUP_STATS.items():
        group.attrs[name] = float(s[k])
    group.create_dataset("obs_mean", data=s[S_SIZE:S_SIZE + D])
    group.create_dataset("obs_var", data=s[S_SIZE + D:])
    group.create_dataset("thread_return", data=np.asarray(ret, np.float64)[:, 0].copy())


def read_group(group):
    """(stats, config, ret) from a group :func:`write_group` wrote."""
    mean, var = np.asarray(group["obs_mean"][()], np.float64), np.asarray(group["obs_var"][()], np.float64)
    if mean.shape != var.shape or mean.ndim != 1:
        raise ValueError(f"/normalizer's obs_mean {mean.shape} and obs_var {var.shape} do not match")
    stats = np.concatenate([np.zeros(S_SIZE), mean, var])
    config = np.zeros(NC_SIZE)
    config[NC_OBS] = float(bool(group.attrs["observations"]))
    config[NC_REWARD] = float(bool(group.attrs["rewards"]))
    for name, k in GROUP_CONFIG.items():
        config[k] = float(group.attrs[name])
    for name, k in GROUP_STATS.items():
        stats[k] = float(group.attrs[name])
    return stats, config, np.asarray(group["thread_return"][()], np.float64).reshape(-1, 1)


# ----------------------------------------------------------------------------- values (--normalize-value)
VALUE_STD_MIN = 1e-2    # σ_min: returns that stopped varying must not scale the value head up without bound


@njit(nogil=True, cache=True, error_model="numpy")
def value_moments(stats):
    """(μ, σ) of the returns V has learned from (``value_stats``, VS_* layout): V = σ v̂ + μ, v̂ the
    value head's output; σ = √max(ν − μ², σ_min²). (0, 1) before any return was seen."""
    if stats[VS_COUNT] == 0.0:
        return 0.0, 1.0
    mean = stats[VS_MEAN]
    return mean, np.sqrt(max(stats[VS_SECOND] - mean * mean, VALUE_STD_MIN * VALUE_STD_MIN))


def write_value_group(group, stats, rate):
    """The checkpoint's /value_scale group (docs/checkpoint-format.md): attrs mean and std (V = std ·
    v + mean, v the value head's output), count, second_moment, rate and std_min."""
    s = np.asarray(stats, np.float64).copy()
    mean, std = value_moments(s)
    for name, value in (("mean", mean), ("std", std), ("count", s[VS_COUNT]), ("second_moment", s[VS_SECOND]),
                        ("rate", rate), ("std_min", VALUE_STD_MIN)):
        group.attrs[name] = float(value)


def read_value_group(group):
    """The ``value_stats`` array (VS_* layout) of a group :func:`write_value_group` wrote."""
    stats = np.zeros(VS_SIZE, np.float64)
    stats[VS_COUNT] = float(group.attrs["count"])
    stats[VS_MEAN] = float(group.attrs["mean"])
    stats[VS_SECOND] = float(group.attrs["second_moment"])
    return stats
