"""Checking a run's inputs before any work starts.

A refused run must cost the user nothing: no run directory, no file, no thread.
So ``asyncrl train`` calls, in this order and before it creates anything:

1. :func:`check_config`: every number and choice of a :class:`~numba_a3c.config.TrainConfig`
   (threads, steps, lr, γ, t_max, clipping, RMSProp α and ε, hidden sizes, evaluation and saving
   intervals, seed) is in its valid range.
2. :func:`check_environment`: the environment id exists (close matches are suggested), the
   algorithm can act in its action space (discrete, or a Box for A3C), the network can read its observations, and
   the run fits in memory.
3. :func:`check_run_dir` and :func:`check_resume`: the run directory can be written and does not
   already hold another run (unless ``--force`` or ``--resume``); a resumed checkpoint exists
   and is one.

Each raises :class:`ConfigError` (a ``ValueError``) whose message is one line saying what is wrong
and what to do; the CLI turns it into a usage error (exit code 2, no traceback).
"""

import difflib
import math
import os
import tempfile
from pathlib import Path

from numba_a3c.config import ALGORITHMS, NETWORKS, OPTIMIZERS, RECURRENT_NETWORKS

MAX_THREADS = 256          # more threads than this is a typing error, not a training run
MAX_STEPS = 10**13         # ~ 3 years at 100,000 steps/s
MAX_T_MAX = 1000           # segment length (the paper uses 5)
MAX_HIDDEN = 65_536        # units in one hidden layer
MAX_LAYERS = 16
MAX_EVAL_EPISODES = 100_000
MAX_SEED = 2**32 - 1
MEMORY_FRACTION = 0.8      # a run may plan to use at most this fraction of the machine's memory


class ConfigError(ValueError):
    """An input that cannot start a run; the message says what was wrong and what to do."""


def suggest(value, choices):
    """`` Did you mean X?`` for the closest of ``choices`` to ``value`` ('' when none is close)."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=2, cutoff=0.5)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def _opt(name):
    return "--" + name.replace("_", "-")


def _finite(name, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{_opt(name)} {value}: must be a finite number")


def _int_range(name, value, low, high, why=""):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{_opt(name)} {value!r}: must be an integer")
    if value < low or value > high:
        bounds = f"at least {low:,}" if high is None or high >= 10**15 else f"between {low:,} and {high:,}"
        raise ConfigError(f"{_opt(name)} {value:,}: must be {bounds}{why}")


def check_config(config):
    """Raise :class:`ConfigError` for the first field of ``config`` outside its valid range.

    The ranges: threads 1..256; steps 1..10¹³; 0 < lr ≤ 1; 0 < γ ≤ 1; t_max 1..1000; β ≥ 0;
    0 ≤ RMSProp α < 1; RMSProp ε > 0; clip norm ≥ 0 (0: off); reward clip ≥ 0 (0: off);
    target interval ≥ 1; ε anneal steps ≥ 0; 1..16 hidden layers of 1..65,536 units;
    eval/save intervals ≥ 0 (0: off); 1..100,000 evaluation episodes; 0 ≤ evaluation ε ≤ 1; log interval > 0;
    0 ≤ seed < 2³².
    """
    c = config
    for name, value, choices in (("algo", c.algo, ALGORITHMS), ("optimizer", c.optimizer, OPTIMIZERS),
                                 ("network", c.network, NETWORKS), ("activation", c.activation, ("relu", "tanh"))):
        if value not in choices:
            raise ConfigError(f"{_opt(name)} {value!r} is not one of {', '.join(choices)}.{suggest(value, choices)}")
    if c.network in RECURRENT_NETWORKS and c.algo != "a3c":
        raise ConfigError(f"--network {c.network} is recurrent and only --algo a3c carries an LSTM state; use --algo "
                          f"a3c, or a feed-forward network (mlp, conv, atari) with --algo {c.algo}")
    _int_range("threads", c.threads, 1, MAX_THREADS,
               " (threads may exceed the number of cores; more than 256 only adds contention)")
    _int_range("steps", c.steps, 1, MAX_STEPS)
    _int_range("t_max", c.t_max, 1, MAX_T_MAX, " (the paper uses 5)")
    _int_range("target_interval", c.target_interval, 1, MAX_STEPS)
    _int_range("eps_anneal_steps", c.eps_anneal_steps, 0, MAX_STEPS)
    _int_range("eval_every", c.eval_every, 0, MAX_STEPS, " (0 turns periodic evaluation off)")
    _int_range("eval_episodes", c.eval_episodes, 1, MAX_EVAL_EPISODES)
    _int_range("save_every", c.save_every, 0, MAX_STEPS, " (0 saves only at the end)")
    _int_range("seed", c.seed, 0, MAX_SEED)
    for name in ("lr", "gamma", "beta", "value_weight", "value_rate", "rms_alpha", "rms_eps", "clip_norm",
                 "reward_clip", "log_interval", "eval_epsilon"):
        _finite(name, getattr(c, name))
    if not 0.0 <= c.eval_epsilon <= 1.0:
        raise ConfigError(f"--eval-epsilon {c.eval_epsilon:g}: must be in [0, 1] (0: greedy evaluation)")
    if not 0.0 < c.lr <= 1.0:
        raise ConfigError(f"--lr {c.lr:g}: the learning rate must be in (0, 1]; typical values are 1e-4 to 1e-2")
    if not 0.0 < c.gamma <= 1.0:
        raise ConfigError(f"--gamma {c.gamma:g}: the discount factor must be in (0, 1], e.g. 0.99")
    if c.beta < 0.0:
        raise ConfigError(f"--beta {c.beta:g}: the entropy weight must be >= 0 (0 turns the entropy bonus off)")
    if c.value_weight <= 0.0:
        raise ConfigError(f"--value-weight {c.value_weight:g}: the value loss's weight must be > 0 (1 is the "
                          "paper's loss; a value that never learns leaves the advantage R − V meaningless)")
    if not 0.0 < c.value_rate <= 1.0:
        raise ConfigError(f"--value-rate {c.value_rate:g}: the step size of --normalize-value's moving averages must "
                          "be in (0, 1], e.g. 1e-4")
    if c.normalize_advantage and not c.normalize_value:
        raise ConfigError("--normalize-advantage reads the advantage in --normalize-value's units: add "
                          "--normalize-value")
    if not 0.0 <= c.rms_alpha < 1.0:
        raise ConfigError(f"--rms-alpha {c.rms_alpha:g}: the RMSProp decay must be in [0, 1), e.g. 0.99")
    if c.rms_eps <= 0.0:
        raise ConfigError(f"--rms-eps {c.rms_eps:g}: RMSProp's epsilon must be > 0, e.g. 0.1")
    if c.clip_norm < 0.0:
        raise ConfigError(f"--clip-norm {c.clip_norm:g}: must be >= 0 (0 turns gradient clipping off)")
    if c.reward_clip < 0.0:
        raise ConfigError(f"--reward-clip {c.reward_clip:g}: must be >= 0 (0 turns reward clipping off)")
    if c.log_interval <= 0.0:
        raise ConfigError(f"--log-interval {c.log_interval:g}: must be > 0 seconds (use --quiet for no progress)")
    hidden = tuple(c.hidden)
    if not 1 <= len(hidden) <= MAX_LAYERS:
        raise ConfigError(f"--hidden: give 1 to {MAX_LAYERS} hidden layer sizes, e.g. 64,64")
    for h in hidden:
        _int_range("hidden", h, 1, MAX_HIDDEN)


def _available_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def planned_memory(config, network):
    """Bytes a run's arrays take: θ, θ⁻ and the optimiser statistics, plus per thread θ′, dθ, the
    private optimiser statistics and the (t_max + 1)-row observation and workspace buffers."""
    P = network.n_params
    rows = config.t_max + 1
    per_thread = 4 * (3 * P + rows * (network.input_size + 3 * network.workspace_size))
    return 4 * 3 * P + config.threads * per_thread


def check_environment(config, make_env=None):
    """The run's parts (:class:`~numba_a3c.build.RunParts`: the environment's
    :class:`~numba_a3c.envs.base.EnvInfo` and the network), built once here for the trainer, or
    :class:`ConfigError` when the id is unknown, the algorithm cannot act in it, the network
    cannot read its observations or the run would not fit in memory. ``make_env``: a callable
    that makes the environment instead of ``config.env`` (:func:`numba_a3c.train`)."""
    from numba_a3c.build import NetworkChoiceError, RunParts, build_network, environment
    from numba_a3c.envs.base import EnvError

    try:
        info = environment(config, make_env)
    except EnvError as exc:
        msg = str(exc)
        if "action space" in msg:
            msg = f"--algo {config.algo} cannot train on {config.env}: {msg}"
        raise ConfigError(msg) from None
    if info.continuous and config.algo != "a3c":
        raise ConfigError(f"--algo {config.algo} cannot train on {info.env_id}: its actions are continuous (a Box of "
                          f"{info.n_actions}); the Q methods need discrete actions. Use --algo a3c (Gaussian policy)")
    try:
        from numba_a3c.envs.subproc import want_processes

        want_processes(config.env_processes, info, config.threads)
    except EnvError as exc:
        raise ConfigError(str(exc)) from None
    if not info.continuous and info.n_actions < 2:
        raise ConfigError(f"{info.env_id} has {info.n_actions} action(s); there is nothing to learn with fewer than 2")
    try:
        network = build_network(config, info)
    except NetworkChoiceError as exc:   # options that do not go together: the message says which
        raise ConfigError(str(exc)) from None
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"--network {config.network} cannot read {config.env}'s observations "
                          f"{tuple(info.obs_shape)}: {exc}") from None
    need = planned_memory(config, network)
    have = _available_memory()
    if have and need > MEMORY_FRACTION * have:
        raise ConfigError(f"this run needs about {need / 2**30:.1f} GiB for its {network.n_params:,} parameters "
                          f"and {config.threads} threads, more than this machine has ({have / 2**30:.1f} GiB); "
                          f"use fewer --threads, smaller --hidden or a shorter --t-max")
    return RunParts(config, info, network)


def _existing_ancestor(path):
    p = Path(os.path.abspath(path))
    while not p.exists():
        p = p.parent
    return p


def check_writable(path):
    """Raise :class:`ConfigError` unless the directory ``path`` exists and can be written, or can
    be created. Probes with a temporary file that is removed at once (so it also catches
    read-only file systems, which permission bits do not show)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file, not a directory; choose another --out")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ConfigError(f"cannot create run directory {path}: {base} is a file, not a directory; "
                          f"choose another --out")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {path}: no file can be created in {base} "
                          f"({exc.strerror or exc}); choose another --out") from None


def check_output_file(option, path):
    """Raise :class:`ConfigError` unless a file can be written at ``path`` (``--plot``,
    ``--record``): checked before any work, so a typo in a directory does not cost an evaluation.
    ``path`` must not be a directory and its directory must exist and be writable (probed with a
    temporary file, removed at once)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the directory {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: no file can be created in {folder} ({exc.strerror or exc})") from None


def check_run_dir(run_dir, force=False, resuming_from=None):
    """Refuse a run directory that cannot be written, or that already holds files, unless
    ``force`` or it is the directory of the checkpoint being resumed (``resuming_from``)."""
    run_dir = Path(run_dir)
    check_writable(run_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()) and not force:
        if resuming_from is not None and Path(resuming_from).resolve().parent == run_dir.resolve():
            return
        if resuming_from is not None:
            raise ConfigError(f"--out {run_dir} already holds files; omit --out to continue in the checkpoint's "
                              f"directory, use --force to write into it anyway, or choose another --out")
        raise ConfigError(f"run directory {run_dir} already exists and is not empty; use --force to reuse it, "
                          f"--resume {run_dir} to continue it, or another --out")


def check_resume(path):
    """The checkpoint file a ``--resume`` argument names (a file, or a run directory holding
    ``latest.h5``); :class:`ConfigError` when there is none. The file's contents are checked when
    it is loaded (:class:`~numba_a3c.checkpoint.CheckpointError`)."""
    p = Path(path)
    if p.is_dir():
        from numba_a3c.checkpoint import latest_in

        latest, found = latest_in(p)
        if latest is None:
            hint = f" (it has {', '.join(found)}; give one of them)" if found else ""
            raise ConfigError(f"--resume {p}: the directory has no latest.h5{hint}")
        return latest
    if not p.exists():
        raise ConfigError(f"--resume {p}: no such file or run directory")
    return p


def check_stop_at(stop_at, steps_done):
    """``--stop-at`` must lie after the steps already done."""
    if stop_at is None:
        return
    if stop_at <= steps_done:
        raise ConfigError(f"--stop-at {stop_at:,} is not after the {steps_done:,} steps already done")
