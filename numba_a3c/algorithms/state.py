"""The state of one actor-learner, as a named tuple of arrays that nopython code can take.

An actor-learner (one worker thread) sees two kinds of arrays:

Shared by every thread (the *same* array objects in each thread's :class:`Learner`):
    ``theta``        θ, the parameters: read by everyone, written lock-free by the optimiser.
    ``theta_target`` θ⁻, the target network of the Q methods: written by whichever thread
                     crosses the next multiple of I_target (claimed with a compare-and-swap).
    ``opt_shared``   the shared RMSProp statistics g, written lock-free (empty if unused).
    ``counters``     int64 counters: the global step T (atomic add), the stop flag, the run
                     status and the next target refresh step (atomic compare-and-swap).
    ``table``        the network's layer table (read only).
    ``config_i`` / ``config_f``  the run's hyperparameters (read only).
    ``thread_i`` / ``thread_f``  this thread's ROW of the per-thread counters and statistics.
                     Each thread writes only its own row; the main thread reads all rows to
                     report progress and to save checkpoints.
    ``episode_log``  this thread's (capacity, 3) ring buffer of finished episodes, written only
                     by this thread: (global step T, return, length).
    ``value_stats``  the moving mean and second moment of the returns (``--normalize-value``,
                     A3C), written lock-free by every thread at each segment's end.

Private to the thread: ``theta_local`` θ′ (n-step Q and A3C), ``grads`` dθ, ``opt_private``
(per-thread RMSProp g or momentum m), the segment buffers ``obs``/``ws``/``delta``/``tws``,
``actions``/``rewards``/``returns``, ``scratch``, ``backward_scratch`` (what
:func:`~numba_a3c.nn.network.backward_rows` works in, allocated once so that no segment allocates),
the agent's ``rng`` and the environment's ``env_rng`` and ``env_state``.
"""

from collections import namedtuple

import numpy as np

# Algorithms, as numbers in config_i[CI_ALGO]. ALGORITHM_IDS is the one list of algorithm names
# (TrainConfig's choices are its keys, in this order).
ONESTEP_Q = 0
SARSA = 1
NSTEP_Q = 2
A3C = 3
ALGORITHM_IDS = {"a3c": A3C, "nstep-q": NSTEP_Q, "onestep-q": ONESTEP_Q, "sarsa": SARSA}

# Optimisers, as numbers in config_i[CI_OPTIMIZER]; OPTIMIZER_IDS is the one list of their names.
SHARED_RMSPROP = 0
RMSPROP = 1
MOMENTUM = 2
OPTIMIZER_IDS = {"shared-rmsprop": SHARED_RMSPROP, "rmsprop": RMSPROP, "momentum": MOMENTUM}

# config_i: integer hyperparameters (the same for every thread).
CI_ALGO = 0
CI_T_MAX = 1              # segment length t_max (n-step Q, A3C) or I_AsyncUpdate (one-step methods)
CI_TARGET_INTERVAL = 2    # I_target, in global steps
CI_OPTIMIZER = 3
CI_N_ACTIONS = 4
CI_OUT_Q = 5              # workspace offsets of the head outputs (−1 where absent)
CI_OUT_PI = 6
CI_OUT_V = 7
CI_ACTIVATION_SIZE = 8    # leading part of a workspace row that holds layer outputs
CI_BUDGET = 9             # T_max: the global step budget
CI_EPS_ANNEAL = 10        # steps over which ε goes from 1 to its final value
CI_ANNEAL_LR = 11         # 1: lr decays linearly to 0 over the budget
CI_EVAL_LIMIT = 12        # (unused by learners) step limit of one evaluation episode
CI_NORMALIZE_VALUE = 13   # 1: V's head learns normalised returns (A3C; see value_stats, algorithms/a3c.py)
# A3C with a Gaussian policy (Box actions; CI_N_ACTIONS is then the action dimension D):
CI_GAUSSIAN = 16          # 1: the policy is Gaussian (heads μ, s, V), 0: softmax
CI_OUT_MU = 17            # workspace offsets of μ and of s (σ² = softplus(s) + VAR_MIN) (−1 where absent)
CI_OUT_SIGMA = 18
CI_OUT_ACTION = 19        # workspace offset of the sampled, unclipped action a_i (D floats per row)
CI_SIZE = 24

# config_f: float hyperparameters.
CF_GAMMA = 0
CF_LR = 1
CF_RMS_ALPHA = 2          # RMSProp decay α (also the momentum α)
CF_RMS_EPS = 3            # RMSProp ε (inside the square root)
CF_BETA = 4               # entropy weight β (A3C)
CF_CLIP_NORM = 5          # max global gradient norm (0: no clipping)
CF_REWARD_CLIP = 6        # clip training rewards to [−c, c] (0: no clipping)
CF_INPUT_SCALE = 7        # observation scale (1/255 for uint8 frames)
CF_VALUE_WEIGHT = 8       # weight c_v of the value loss ½(R − V)² (A3C)
CF_VALUE_RATE = 9         # step size of the return statistics' moving averages (--normalize-value)
CF_SIZE = 10
# A Gaussian policy's config_f has 2·D more entries after CF_SIZE: for each action dimension k,
# config_f[CF_SIZE + 2k] is the centre c_k of its bounds and config_f[CF_SIZE + 2k + 1] the
# half-width h_k (0: unbounded); the environment is sent c_k + h_k · clip(a_k, −1, 1).

# counters: shared int64.
C_T = 0                   # global step counter T
C_STOP = 1                # non-zero: every thread stops at its next step
C_STATUS = 2              # first error status any thread reported (0: fine)
C_TARGET_NEXT = 3         # the global step at which θ⁻ is next refreshed
C_TARGET_UPDATES = 4      # how many times θ⁻ was refreshed
C_PAUSE_AT = 5            # threads stop at the first segment boundary at or after this global step
C_SIZE = 8

# Status codes: counters[C_STATUS] (the first problem any thread reported), the return value of
# end_segment / run_native, and a worker's end.
OK = 0
DIVERGED = 1              # a gradient or parameter became NaN or Inf
STOPPED = 2               # the stop flag was raised (Ctrl-C, a pause at C_PAUSE_AT, another thread's end)
BUDGET_DONE = 3           # T reached the budget
ERROR = 4                 # set by Python, never by a kernel: a worker raised, a save or an evaluation failed
# How a run that ended with each status is reported (RunResult.status); a STOPPED run is "stopped"
# when the user asked for it (Ctrl-C, SIGTERM) and "paused" when it reached --stop-at.
STATUS_NAMES = {OK: "finished", DIVERGED: "diverged", STOPPED: "stopped", BUDGET_DONE: "finished", ERROR: "failed"}

# thread_i: one row per thread, written by that thread only.
TI_THREAD = 0             # the thread's index
TI_STEPS = 1              # its local step counter t
TI_EPISODES = 2           # finished episodes
TI_UPDATES = 3            # optimiser updates applied
TI_N = 4                  # transitions in the current segment
TI_EPISODE_STEPS = 5      # steps in the current episode
TI_PENDING_ACTION = 6     # Sarsa: the action a′ already chosen for the next step (−1: none)
TI_SEGMENT_END = 7        # why the current segment ended (SEG_*)
TI_EPISODE_OVER = 8       # 1 when the environment must be reset before the next segment
TI_LOCAL_FRESH = 9        # 1 when the last update already wrote θ′ ← θ (begin_segment skips its copy)
TI_SIZE = 16

SEG_NONE = 0
SEG_TERMINAL = 1          # s_n is terminal: no bootstrap
SEG_TRUNCATED = 2         # time limit: the episode ends but s_n bootstraps
SEG_CUT = 3               # t_max reached (or the run stops): s_n bootstraps

# thread_f: one row per thread.
TF_EPS_FINAL = 0          # the thread's final ε (Q methods)
TF_EPSILON = 1            # its current ε
TF_EPISODE_RETURN = 2     # return of the current episode so far (raw, unclipped rewards)
TF_LR = 3                 # learning rate used by the last update
TF_LOSS = 4               # loss of the last update (summed over the segment)
TF_ENTROPY = 5            # mean policy entropy of the last segment (A3C)
TF_GRAD_NORM = 6          # global gradient norm of the last update (before clipping)
TF_VALUE = 7              # mean V(s_i) (A3C) or mean Q(s_i, a_i) of the actions taken (Q methods) over the last segment
TF_SIZE = 8

# episode_log: (capacity, EL_SIZE) per thread, a ring buffer of finished episodes.
EL_T = 0                  # the global step T at the episode's end
EL_RETURN = 1             # its return (raw, unclipped rewards)
EL_LENGTH = 2             # its length in steps
EL_SIZE = 3
EPISODE_LOG_CAPACITY = 4096

# value_stats: shared float64, the statistics of the returns V learns (--normalize-value, A3C).
VS_COUNT = 0              # returns seen
VS_MEAN = 1               # μ, their moving mean
VS_SECOND = 2             # ν, the moving mean of their squares: σ = √max(ν − μ², σ_min²)
VS_SIZE = 4

NEVER = 2**62             # C_PAUSE_AT when no pause is asked for

Learner = namedtuple(
    "Learner",
    [
        # shared
        "table", "theta", "theta_target", "opt_shared", "counters", "config_i", "config_f",
        "thread_i", "thread_f", "episode_log", "value_stats",
        # private
        "theta_local", "grads", "opt_private", "obs", "ws", "delta", "tws",
        "actions", "rewards", "returns", "scratch", "backward_scratch", "rng", "env_rng", "env_state",
    ],
)


def epsilon_finals(rng, n):
    """Sample each thread's final ε from {0.1, 0.01, 0.5} with probabilities {0.4, 0.3, 0.3} (paper, §5.1)."""
    return rng.choice(np.array([0.1, 0.01, 0.5]), size=n, p=[0.4, 0.3, 0.3])
