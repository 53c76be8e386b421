"""Worker threads: N actor-learners updating one shared parameter array without locks (Hogwild).

This module owns the threads. The workers of a gymnasium environment (2 or more threads) run as
processes instead (:mod:`numba_a3c.worker_processes`): the same arrays, then in shared memory, the
same loop (:func:`python_env_loop`), and the same rules below, across processes.

Shared by all threads and written WITHOUT locks
    ``theta``         θ, the flat float32 parameters (every update, by every thread)
    ``opt_shared``    the shared RMSProp statistics g (every update, by every thread)
    ``theta_target``  θ⁻ (Q methods): copied from θ by the one thread that claims each refresh
    ``norm_stats``    the running observation and return statistics of ``--normalize-obs`` /
                      ``--normalize-reward`` (:mod:`numba_a3c.normalize`; every step, by every thread)
    ``value_stats``   ``--normalize-value``'s moving return statistics, and with them the value
                      head's W and b in θ, rescaled at every A3C segment's end by every thread
                      (:func:`numba_a3c.algorithms.a3c.normalize_targets`)
Shared and written atomically
    ``counters``      the global step T (atomic add: exact, no lost increments), the next θ⁻
                      refresh step (compare-and-swap), the stop flag and the run status
Shared, one row per thread, each row written only by its own thread (read by the main thread)
    ``thread_i``, ``thread_f``, ``episode_log``, and the stacked per-thread arrays below
Private to each thread (a block of a stacked array that no other thread touches)
    θ′ ``theta_local``, dθ ``grads``, ``opt_private`` (per-thread RMSProp g / momentum m), the
    discounted return R of ``--normalize-reward`` (a row of ``norm_ret``), the segment buffers,
    the agent's and the environment's RNG states, the environment state, and the workspace ``ws``
    (stacked in :class:`SharedState` so that the main thread can read, at a segment boundary, the
    recurrent state (h, c) an LSTM network keeps in each thread's row 0).

Recurrent state (``--network lstm`` / ``atari-lstm``): each thread's (h, c) lives in row 0 of
its workspace at a segment boundary: the state at the segment's start, which BPTT needs and
which the segment's last step hands on (``end_segment``); h = c = 0 where an episode starts. On
resume from a checkpoint taken at rest the saved states are restored with the environments
(the run continues exactly); where the environments start new episodes (a Hogwild snapshot, or
a Python environment) the states start from zero too (:meth:`Workers.reset_environments`).

Lock-free writes can lose an update when two threads write the same float at once; they cannot
tear a float or corrupt memory (each element is an aligned 4-byte store). Every kernel is
compiled in the main thread before any worker starts. A Python environment's loop with a small
network steps with the one kernel that keeps the GIL (:func:`python_env_step_holding_gil` says
why). A worker that raises stops every other worker (the shared stop flag) and the trainer
reports which thread failed and why.
"""

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from numba_a3c.algorithms.learner import act, begin_segment, end_segment, observe_scaled
from numba_a3c.algorithms.policies import action_bounds_array, scale_action
from numba_a3c.algorithms.state import (
    ALGORITHM_IDS,
    BUDGET_DONE,
    C_PAUSE_AT,
    C_SIZE,
    C_STATUS,
    C_STOP,
    C_T,
    C_TARGET_NEXT,
    CF_BETA,
    CF_CLIP_NORM,
    CF_GAMMA,
    CF_INPUT_SCALE,
    CF_LR,
    CF_REWARD_CLIP,
    CF_RMS_ALPHA,
    CF_RMS_EPS,
    CF_SIZE,
    CF_VALUE_RATE,
    CF_VALUE_WEIGHT,
    CI_ACTIVATION_SIZE,
    CI_ALGO,
    CI_ANNEAL_LR,
    CI_BUDGET,
    CI_EPS_ANNEAL,
    CI_GAUSSIAN,
    CI_N_ACTIONS,
    CI_NORMALIZE_VALUE,
    CI_OPTIMIZER,
    CI_OUT_ACTION,
    CI_OUT_MU,
    CI_OUT_PI,
    CI_OUT_Q,
    CI_OUT_SIGMA,
    CI_OUT_V,
    CI_SIZE,
    CI_T_MAX,
    CI_TARGET_INTERVAL,
    EL_SIZE,
    EPISODE_LOG_CAPACITY,
    ERROR,
    NEVER,
    OK,
    OPTIMIZER_IDS,
    SHARED_RMSPROP,
    STOPPED,
    TF_EPISODE_RETURN,
    TF_EPS_FINAL,
    TF_SIZE,
    TI_EPISODE_OVER,
    TI_EPISODE_STEPS,
    TI_EPISODES,
    TI_LOCAL_FRESH,
    TI_N,
    TI_PENDING_ACTION,
    TI_SIZE,
    TI_STEPS,
    TI_THREAD,
    VS_SIZE,
    Learner,
    epsilon_finals,
)
from numba_a3c.envs.base import EnvError, flat_observation
from numba_a3c.envs.native import ENV_STATE_SIZE, env_reset, env_step, env_step_box
from numba_a3c.envs.registry import make_python_env
from numba_a3c.envs.subproc import want_processes
from numba_a3c.jit import njit
from numba_a3c.nn.network import reset_state
from numba_a3c.normalize import Normalizer, new_arrays, normalize_observation, scale_reward
from numba_a3c.rng import rng_seed
from numba_a3c.worker_processes import WorkerProcess


def describe_exception(exc):
    """``Type: message (at file:line in function)`` of an exception, from its innermost frame (an
    exception that carries a ``description``, one raised in a worker process, gives that)."""
    if getattr(exc, "description", None):
        return exc.description
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        code = tb.tb_frame.f_code
        where = f" (at {code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno} in {code.co_name})"
    return f"{type(exc).__name__}: {exc}{where}"


class WorkerError(RuntimeError):
    """A worker thread raised; ``thread`` is its index and ``error`` the exception."""

    def __init__(self, thread, error):
        super().__init__(f"worker thread {thread} failed: {describe_exception(error)}")
        self.thread = thread
        self.error = error


# ============================================================================ nopython loops
@njit(nogil=True, cache=True)
def run_native(L, env_id, N):
    """The whole actor-learner loop for a native environment, in nopython code, GIL released.

    Repeats segments (begin → act/step/observe … → end) until T reaches the budget, the stop
    flag is raised, or the parameters diverge; returns the status. ``L.obs[0]`` must hold the
    current state, normalised (the caller resets the environment once before the first call and
    applies :func:`normalize_observation`). ``N`` is the thread's
    :class:`~numba_a3c.normalize.Normalizer` (both normalisations off: the loop is as without it).
    """
    gaussian = L.config_i[CI_GAUSSIAN] != 0
    D = L.config_i[CI_N_ACTIONS]
    a_off = L.config_i[CI_OUT_ACTION]
    while True:
        begin_segment(L)
        while True:
            n = L.thread_i[TI_N]
            a = act(L)
            if gaussian:
                # the unclipped sample stays in ws for the loss; the environment gets it clipped and scaled
                scale_action(L.ws[n, a_off:a_off + D], L.config_f, L.scratch[0:D])
                r, terminal, truncated = env_step_box(env_id, L.env_state, L.scratch[0:D], L.env_rng, L.obs[n + 1])
            else:
                r, terminal, truncated = env_step(env_id, L.env_state, a, L.env_rng, L.obs[n + 1])
            normalize_observation(N, L.obs[n + 1])
            if observe_scaled(L, r, scale_reward(N, r, terminal or truncated), terminal, truncated,
                              terminal or truncated):
                break
        status = end_segment(L)
        if L.thread_i[TI_EPISODE_OVER] != 0:
            env_reset(env_id, L.env_state, L.env_rng, L.obs[0])
            normalize_observation(N, L.obs[0])
            L.thread_i[TI_EPISODE_OVER] = 0
        if status != OK:
            return status


@njit(nogil=True, cache=True)
def reset_native(L, env_id):
    """Reset a native environment into ``L.obs[0]`` (start of a run)."""
    env_reset(env_id, L.env_state, L.env_rng, L.obs[0])
    L.thread_i[TI_EPISODE_OVER] = 0


@njit(nogil=True, cache=True)
def python_env_begin(L, N):
    """Start a segment and choose its first action (Python-environment loop). ``L.obs[0]`` holds
    an observation fresh from a reset, as the environment gave it: it is normalised here."""
    normalize_observation(N, L.obs[0])
    begin_segment(L)
    return act(L)


@njit(nogil=True, cache=True)
def python_env_step(L, N, reward, terminal, truncated, episode_over):
    """Record a Python environment's step (s_{n+1} already in ``L.obs[n+1]``, as the environment
    gave it: it is normalised here, and the reward scaled, by ``N``) and continue.

    Returns the next action (≥ 0; for a Gaussian policy 0, the action vector being in the action
    slot of ``L.ws[L.thread_i[TI_N]]``, see :func:`env_action`); −1 when the environment must be reset before the next
    segment (call :func:`python_env_begin` after writing the reset state into ``L.obs[0]``); or
    −2 − status when the run must stop (status = DIVERGED, STOPPED or BUDGET_DONE).
    """
    normalize_observation(N, L.obs[L.thread_i[TI_N] + 1])
    if observe_scaled(L, reward, scale_reward(N, reward, episode_over), terminal, truncated, episode_over):
        status = end_segment(L)
        if status != OK:
            return -2 - status
        if L.thread_i[TI_EPISODE_OVER] != 0:
            return -1
        begin_segment(L)
    return act(L)


@njit(cache=True)
def python_env_step_holding_gil(L, N, reward, terminal, truncated, episode_over):
    """:func:`python_env_step` that keeps the GIL: the one kernel of the package compiled without
    ``nogil``, on purpose (:func:`steps_holding_gil` says when the workers use it).

    Between two Python environment steps the kernel of a small network runs for a few µs, every
    fifth one for the update. Releasing the GIL for those few µs buys no parallelism (the other
    thread's next step is Python, and needs the GIL), only a hand-over: the other thread is woken,
    and this one must later wait for the GIL to come back. On the 2-core Xeon, A3C with 2 threads on
    gymnasium's CartPole-v1 ran at 0.59× one thread with the releasing kernel and 1.02× with this
    one; on LunarLander-v3, 0.60× and 0.94× (README, "Python environments on every core").
    Releasing it for the update only was tried too, and measured in between. Calls inside
    nopython code never touch the GIL, so this runs the same machine code as
    :func:`python_env_step`, entered without releasing it.
    """
    return python_env_step(L, N, reward, terminal, truncated, episode_over)


def steps_holding_gil(env_info, network, processes):
    """Whether the workers step with :func:`python_env_step_holding_gil`: a Python environment
    stepped in this process (its ``step`` holds the GIL) and a network without convolutions (whose
    per-step kernel takes µs). Atari's emulator steps with the GIL released and a conv net's
    forward pass takes long enough to run beside another thread's Python, so both keep the
    releasing kernel, as do worker processes (each steps alone in its process, so nothing waits
    for the GIL it would release)."""
    return (env_info.kind == "gym" and not processes
            and not any(layer["type"] == "conv" for layer in network.layers))


# ============================================================================ shared state
@dataclass
class SharedState:
    """Every array of a run: the shared ones and the stacked per-thread ones (see module docstring)."""

    theta: np.ndarray
    theta_target: np.ndarray
    opt_shared: np.ndarray
    counters: np.ndarray
    config_i: np.ndarray
    config_f: np.ndarray
    thread_i: np.ndarray        # (N, TI_SIZE)
    thread_f: np.ndarray        # (N, TF_SIZE)
    episode_log: np.ndarray     # (N, capacity, 3)
    opt_private: np.ndarray     # (N, P) or (N, 0)
    rng: np.ndarray             # (N, 2) uint64, the agents' generators
    env_rng: np.ndarray         # (N, 2) uint64, the environments' generators
    env_state: np.ndarray       # (N, ENV_STATE_SIZE) float64, native environments' states
    obs: np.ndarray             # (N, rows, input_size); obs[k, 0] is thread k's current state
    private: list = field(default_factory=list)  # per-thread (theta_local, grads, ws, delta, tws, ...)
    ws: np.ndarray = None       # (N, rows, workspace_size) float32; ws[k] is thread k's (row 0 keeps its LSTM state)
    norm_stats: np.ndarray = None   # shared running statistics of numba_a3c.normalize (S_* layout)
    norm_config: np.ndarray = None  # its read-only settings (NC_* layout)
    norm_ret: np.ndarray = None     # (N, 1) float64, each thread's discounted return R (reward scaling)
    value_stats: np.ndarray = None  # (VS_SIZE,) float64, the returns' moving statistics (--normalize-value)
    memory: object = None           # the shared-memory block holding every array above, when the workers are
                                    # processes (numba_a3c.worker_processes.SharedBlock); None: this process's memory

    @property
    def n_threads(self):
        return self.thread_i.shape[0]


def make_config_arrays(config, network):
    """The config_i / config_f arrays the kernels read, from a TrainConfig and a Network."""
    ci = np.zeros(CI_SIZE, np.int64)
    gaussian = network.spec.heads == "gaussian"
    D = network.spec.n_actions
    cf = np.zeros(CF_SIZE + (2 * D if gaussian else 0), np.float64)
    ci[CI_ALGO] = ALGORITHM_IDS[config.algo]
    ci[CI_T_MAX] = config.t_max
    ci[CI_TARGET_INTERVAL] = config.target_interval if config.algo != "a3c" else 0
    ci[CI_OPTIMIZER] = OPTIMIZER_IDS[config.optimizer]
    ci[CI_N_ACTIONS] = network.spec.n_actions
    ci[CI_OUT_Q], ci[CI_OUT_PI], ci[CI_OUT_V] = network.out_q, network.out_pi, network.out_v
    ci[CI_ACTIVATION_SIZE] = network.activation_size
    ci[CI_BUDGET] = config.steps
    ci[CI_EPS_ANNEAL] = config.eps_anneal_steps
    ci[CI_ANNEAL_LR] = 1 if config.anneal_lr else 0
    if config.normalize_value and config.algo == "a3c":
        ci[CI_NORMALIZE_VALUE] = 2 if config.normalize_advantage else 1
    cf[CF_GAMMA] = config.gamma
    cf[CF_LR] = config.lr
    cf[CF_RMS_ALPHA] = config.rms_alpha
    cf[CF_RMS_EPS] = config.rms_eps
    cf[CF_BETA] = config.beta
    cf[CF_VALUE_WEIGHT] = config.value_weight
    cf[CF_VALUE_RATE] = config.value_rate
    cf[CF_CLIP_NORM] = config.clip_norm
    cf[CF_REWARD_CLIP] = config.reward_clip
    cf[CF_INPUT_SCALE] = network.spec.input_scale
    ci[CI_GAUSSIAN] = 1 if gaussian else 0
    ci[CI_OUT_MU], ci[CI_OUT_SIGMA], ci[CI_OUT_ACTION] = network.out_mu, network.out_sigma, network.out_action
    if gaussian:
        cf[CF_SIZE:] = action_bounds_array(network.spec.action_low, network.spec.action_high)
    return ci, cf


def env_action(L, n):
    """The action a Python environment is sent for row ``n``: the Gaussian policy's sample (from the
    row's action slot) clipped to [−1, 1] and scaled to the bounds, as a float32 vector."""
    D = int(L.config_i[CI_N_ACTIONS])
    off = int(L.config_i[CI_OUT_ACTION])
    out = np.empty(D, np.float32)
    scale_action(L.ws[n, off:off + D], L.config_f, out)
    return out


def start_python_episode(L, env, seed, scale):
    """Reset a Python environment (with ``seed``; None: the environment's own sequence) into
    ``L.obs[0]``: a new episode, from the recurrent state h = c = 0. On resume the checkpoint's
    unfinished episode is not continued, so its partial return, length and Sarsa's pending action
    must not leak into this one."""
    reset_state(L.table, L.ws, 0)
    obs, _ = env.reset(seed=seed)
    flat_observation(obs, scale, L.obs[0])
    L.thread_i[TI_N] = 0
    L.thread_i[TI_EPISODE_STEPS] = 0
    L.thread_f[TF_EPISODE_RETURN] = 0.0
    L.thread_i[TI_PENDING_ACTION] = -1


def python_env_loop(L, N, env, scale, step):
    """A worker's loop on a Python environment (a thread's, or a worker process's): step ``env`` with
    the action the kernels chose, hand the step to ``step`` (:func:`python_env_step` or its
    GIL-holding twin), reset at an episode's end. Returns the status that ended it (BUDGET_DONE,
    STOPPED, DIVERGED)."""
    obs_buf = L.obs
    thread_i = L.thread_i
    gaussian = L.config_i[CI_GAUSSIAN] != 0
    a = python_env_begin(L, N)
    while True:
        action = env_action(L, thread_i[TI_N]) if gaussian else int(a)
        obs, reward, terminated, truncated, info = env.step(action)
        flat_observation(obs, scale, obs_buf[thread_i[TI_N] + 1])
        life_lost = bool(info.get("life_lost", False)) if info else False
        a = step(L, N, float(reward), bool(terminated) or life_lost, bool(truncated), bool(terminated or truncated))
        if a == -1:
            obs, _ = env.reset()
            flat_observation(obs, scale, obs_buf[0])
            thread_i[TI_EPISODE_OVER] = 0
            a = python_env_begin(L, N)
        elif a < -1:
            return -2 - a


def new_shared_state(config, network, theta=None):
    """Fresh arrays for a run of ``config.threads`` threads, seeded from ``config.seed``."""
    N = int(config.threads)
    P = network.n_params
    if theta is None:
        theta = network.init_params(config.seed, scheme=config.init)
    theta = np.ascontiguousarray(theta, np.float32)
    ci, cf = make_config_arrays(config, network)
    counters = np.zeros(C_SIZE, np.int64)
    counters[C_TARGET_NEXT] = ci[CI_TARGET_INTERVAL]
    counters[C_PAUSE_AT] = NEVER
    thread_i = np.zeros((N, TI_SIZE), np.int64)
    thread_i[:, TI_THREAD] = np.arange(N)
    thread_i[:, TI_PENDING_ACTION] = -1
    thread_f = np.zeros((N, TF_SIZE), np.float64)
    seeder = np.random.Generator(np.random.PCG64([config.seed, 1]))
    thread_f[:, TF_EPS_FINAL] = epsilon_finals(seeder, N)
    rng = np.zeros((N, 2), np.uint64)
    env_rng = np.zeros((N, 2), np.uint64)
    for k in range(N):
        rng_seed(rng[k], np.uint64(config.seed * 1_000_003 + 2 * k + 1))
        rng_seed(env_rng[k], np.uint64(config.seed * 1_000_003 + 2 * k + 2))
    private_opt = 0 if ci[CI_OPTIMIZER] == SHARED_RMSPROP else P
    norm_stats, norm_config, norm_ret = new_arrays(config, network.spec, N)
    return SharedState(
        theta=theta,
        theta_target=theta.copy(),
        opt_shared=np.zeros(P if private_opt == 0 else 0, np.float32),
        counters=counters,
        config_i=ci,
        config_f=cf,
        thread_i=thread_i,
        thread_f=thread_f,
        episode_log=np.zeros((N, EPISODE_LOG_CAPACITY, EL_SIZE), np.float64),
        opt_private=np.zeros((N, private_opt), np.float32),
        rng=rng,
        env_rng=env_rng,
        env_state=np.zeros((N, ENV_STATE_SIZE), np.float64),
        obs=np.zeros((N, config.t_max + 1, network.input_size), np.float32),
        ws=np.zeros((N, config.t_max + 1, network.workspace_size), np.float32),
        norm_stats=norm_stats,
        norm_config=norm_config,
        norm_ret=norm_ret,
        value_stats=np.zeros(VS_SIZE, np.float64),
    )


def recurrent_states(shared, network):
    """Each thread's recurrent state at its next segment's start, (N, network.state_size): every
    LSTM's (h, c) in layer order (0 columns for a feed-forward network). Read it at rest."""
    return np.stack([network.get_state(shared.ws[k, 0]) for k in range(shared.n_threads)])


def normalizer(shared, k):
    """Thread k's :class:`~numba_a3c.normalize.Normalizer`: the shared statistics and its own R."""
    return Normalizer(shared.norm_stats, shared.norm_config, shared.norm_ret[k])


def set_recurrent_states(shared, network, states):
    """Write :func:`recurrent_states`' array back into each thread's workspace (resume)."""
    for k in range(shared.n_threads):
        network.set_state(shared.ws[k, 0], states[k])


def make_learner(shared, network, k):
    """Thread k's :class:`Learner`: the shared arrays plus its own private buffers."""
    rows = shared.obs.shape[1]
    P = network.n_params
    ws_size = network.workspace_size
    A = network.spec.n_actions
    shared.thread_i[k, TI_LOCAL_FRESH] = 0      # this learner's θ′ is new: its first segment copies θ
    return Learner(
        table=network.table,
        theta=shared.theta,
        theta_target=shared.theta_target,
        opt_shared=shared.opt_shared,
        counters=shared.counters,
        config_i=shared.config_i,
        config_f=shared.config_f,
        thread_i=shared.thread_i[k],
        thread_f=shared.thread_f[k],
        episode_log=shared.episode_log[k],
        value_stats=shared.value_stats,
        theta_local=np.zeros(P, np.float32),
        grads=np.zeros(P, np.float32),
        opt_private=shared.opt_private[k],
        obs=shared.obs[k],
        ws=shared.ws[k] if shared.ws is not None else np.zeros((rows, ws_size), np.float32),
        delta=np.zeros((rows, ws_size), np.float32),
        tws=np.zeros((rows, ws_size), np.float32),
        actions=np.zeros(rows, np.int64),
        rewards=np.zeros(rows, np.float32),
        returns=np.zeros(rows, np.float32),
        scratch=np.zeros(2 * A, np.float32),
        backward_scratch=network.backward_scratch(rows),
        rng=shared.rng[k],
        env_rng=shared.env_rng[k],
        env_state=shared.env_state[k],
    )


# ============================================================================ threads
def processes_wanted(config, env_info):
    """Whether ``config``'s workers will be processes (:func:`~numba_a3c.envs.subproc.want_processes`;
    False where they were asked for and cannot be had: starting the workers says why)."""
    try:
        return want_processes(getattr(config, "env_processes", None), env_info, int(config.threads))
    except EnvError:
        return False


def compile_kernels(config, network, env_info):
    """Compile (or load from the cache) every kernel a run needs, in this thread, before any worker
    starts: a throw-away one-thread learner runs a few segments."""
    warm = config.replace(threads=1, steps=2 * config.t_max + 1, seed=0)
    shared = new_shared_state(warm, network)
    L = make_learner(shared, network, 0)
    N = normalizer(shared, 0)
    if env_info.kind == "native":
        reset_native(L, env_info.native_id)
        normalize_observation(N, L.obs[0])
        run_native(L, env_info.native_id, N)
    else:
        L.obs[:] = 0.0
        a = python_env_begin(L, N)
        while a >= 0:
            a = python_env_step(L, N, 0.0, False, False, False)
        if steps_holding_gil(env_info, network, processes_wanted(config, env_info)):
            for signature in python_env_step.signatures:       # a few seconds cold: only when used
                python_env_step_holding_gil.compile(signature)


class Workers:
    """Starts N worker threads on a SharedState and stops them; knows nothing of progress or files."""

    def __init__(self, shared, network, env_info, config):
        self.shared = shared
        self.network = network
        self.env_info = env_info
        self.config = config
        self.threads = []
        self.errors = []           # (thread index, exception)
        self.statuses = [None] * shared.n_threads
        self._envs = [None] * shared.n_threads          # threads: each one's Python environment
        self._processes = [None] * shared.n_threads     # or worker processes (numba_a3c.worker_processes)
        self._lock = threading.Lock()
        # Workers of a Python environment in processes of their own, or threads of this one.
        self.env_processes = want_processes(getattr(config, "env_processes", None), env_info, shared.n_threads)
        if self.env_processes and shared.memory is None:
            raise ValueError("worker processes need the run's arrays in shared memory: make the state with "
                             "RunParts.initial_state (numba_a3c.worker_processes.share_state)")
        # Each thread's learner (its private θ′, dθ and segment buffers); a worker process builds its own.
        workers_here = 0 if self.env_processes else shared.n_threads
        self.learners = [make_learner(shared, network, k) for k in range(workers_here)]
        self.normalizers = [normalizer(shared, k) for k in range(workers_here)]
        self.hold_gil = steps_holding_gil(env_info, network, self.env_processes)

    # -- environment start-up, in the main thread (deterministic order)
    def reset_environments(self, fresh=True):
        """Reset every thread's environment into obs[k, 0]. ``fresh=False`` (resume) keeps native
        environments where they were, and the recurrent states with them; Python environments
        always start a new episode. A new episode starts from the recurrent state h = c = 0."""
        if self.env_processes:
            # All started first, so that they make their environments at the same time; each
            # resets its own into obs[k, 0] (shared memory), as start_python_episode does here.
            for k in range(self.shared.n_threads):
                self._processes[k] = WorkerProcess(self.shared, self.config, self.env_info, self.network, k)
            for p in self._processes:
                p.wait_ready()
            return
        if self.env_info.kind != "native":
            for k in range(len(self.learners)):
                self._envs[k] = make_python_env(self.env_info, seed=self.config.seed * 1000 + k)
        for k, L in enumerate(self.learners):
            if self.env_info.kind == "native":
                if fresh:
                    reset_native(L, self.env_info.native_id)
                    normalize_observation(self.normalizers[k], L.obs[0])
                    reset_state(L.table, L.ws, 0)
            else:
                start_python_episode(L, self._envs[k], self.config.seed * 1000 + k,
                                     np.float32(self.network.spec.input_scale))

    def start(self):
        for k in range(self.shared.n_threads):
            target = (self._run_native if self.env_info.kind == "native" else
                      self._run_process if self.env_processes else self._run_python)
            t = threading.Thread(target=self._guard, args=(target, k), name=f"asyncrl-worker-{k}", daemon=True)
            self.threads.append(t)
        for t in self.threads:
            t.start()

    def _guard(self, target, k):
        try:
            self.statuses[k] = target(k)
        except BaseException as exc:  # noqa: BLE001 - any failure must stop the run, whatever it is
            with self._lock:
                self.errors.append((k, exc))
            self.shared.counters[C_STATUS] = ERROR
            self.shared.counters[C_STOP] = 1

    def _run_native(self, k):
        return run_native(self.learners[k], self.env_info.native_id, self.normalizers[k])

    def _run_python(self, k):
        step = python_env_step_holding_gil if self.hold_gil else python_env_step
        return python_env_loop(self.learners[k], self.normalizers[k], self._envs[k],
                               np.float32(self.network.spec.input_scale), step)

    def _run_process(self, k):
        return self._processes[k].run()

    def stop(self):
        """Raise the stop flag: every worker finishes its current segment and returns."""
        self.shared.counters[C_STOP] = 1

    def alive(self):
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self.threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.alive()

    def close(self):
        for env in self._envs + self._processes:
            if env is not None:
                env.close()

    @property
    def status(self):
        s = int(self.shared.counters[C_STATUS])
        if s:
            return s
        if any(st == BUDGET_DONE for st in self.statuses):
            return BUDGET_DONE
        if self.shared.counters[C_STOP] or any(st == STOPPED for st in self.statuses):
            return STOPPED
        return OK

    def global_steps(self):
        return int(self.shared.counters[C_T])

    def thread_steps(self):
        return self.shared.thread_i[:, TI_STEPS].copy()

    def thread_episodes(self):
        return self.shared.thread_i[:, TI_EPISODES].copy()


__all__ = ["Workers", "WorkerError", "SharedState", "new_shared_state", "make_learner", "compile_kernels",
           "run_native", "python_env_begin", "python_env_step", "python_env_step_holding_gil", "steps_holding_gil",
           "recurrent_states", "set_recurrent_states",
           "normalizer"]
