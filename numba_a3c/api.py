"""The Python API: :func:`train` a run, :func:`load` a saved agent, and act with it.

In the conventions of Stable-Baselines3 and gymnasium, with the CLI's options, presets and checks::

    run = numba_a3c.train("CartPole-v1", "a3c", steps=50_000)     # or env=MyEnv, a callable
    agent = numba_a3c.load(run.run_dir)                             # or a .h5 file, or a shipped name
    action, _ = agent.predict(obs)                                  # agent.act(obs), agent.evaluate()

:func:`train` does what ``asyncrl train`` does, in the same order: resolve the options on top of
the preset, check them (:class:`ConfigError`, with the message the CLI prints after ``Error:``),
then create the run directory and train in it. The pieces are the CLI's own:
:func:`numba_a3c.config.resolve`, :mod:`numba_a3c.validation`, :mod:`numba_a3c.rundir` and the
:class:`~numba_a3c.trainer.Trainer`. docs/python-api.md shows it in use.
"""

import json
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from numba_a3c.config import TrainConfig, resolve
from numba_a3c.validation import ConfigError, suggest

_OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("env", "algo"))


@dataclass
class Run:
    """What :func:`train` returns.

    ``status`` is the CLI's: "finished", "paused" (``stop_at``), "stopped" (a callback returned
    False, or Ctrl-C), "diverged" or "failed" (``error`` says why). ``final_eval`` is the final
    evaluation (:class:`~numba_a3c.trainer.Evaluation`: ``.mean``, ``.returns``; None when
    ``final_eval=False`` or the run was stopped), ``progress`` every progress report
    (:class:`~numba_a3c.trainer.Progress`) and ``evaluations`` the periodic ones of this call.
    """

    run_dir: Path
    config: TrainConfig
    status: str
    steps: int
    wall_time: float
    episodes: int
    final_eval: object
    agent: "Agent"
    progress: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    stopped_by: str = ""      # "on_progress" or "on_eval" when a callback stopped the run
    error: str = ""

    @property
    def checkpoint(self):
        """The run's ``latest.h5``."""
        return self.run_dir / "latest.h5"


def _check_options(options):
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        name = unknown[0]
        raise ConfigError(f"unknown option {name!r}.{suggest(name, _OPTIONS)} The options are the fields of "
                          f"numba_a3c.TrainConfig (asyncrl train's options with _ for -)")
    if "hidden" in options and options["hidden"] is not None:
        hidden = options["hidden"]
        options["hidden"] = (hidden,) if isinstance(hidden, int) else tuple(hidden)


def configure(env="CartPole-v1", algo="a3c", **options):
    """The resolved :class:`~numba_a3c.config.TrainConfig` :func:`train` would use, checked
    (:class:`ConfigError`), without building anything: ``asyncrl train --show-config``'s answer."""
    from numba_a3c.validation import check_config

    _check_options(options)
    env_id = env if isinstance(env, str) else _callable_id(env)
    config = resolve({**options, "env": env_id, "algo": algo})
    check_config(config)
    return config


def _callable_id(make_env):
    from numba_a3c.envs.registry import callable_env_id

    if not callable(make_env):
        raise ConfigError(f"env {make_env!r}: give an environment id or a zero-argument callable that returns a "
                          f"gymnasium.Env")
    return callable_env_id(make_env)


def _default_run_dir(config):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace('/', '_').replace(':', '_')}-{config.algo}-{stamp}"


def _config_json(config, make_env):
    d = config.to_dict()
    if make_env is not None:
        d["env_note"] = (f"{config.env} was made by a Python callable ({getattr(make_env, '__module__', '?')}."
                         f"{config.env[len('python:'):]}); asyncrl eval and asyncrl train --resume cannot rebuild "
                         f"it: use numba_a3c.load(...).evaluate(env=...) and numba_a3c.train(env=..., resume=...)")
    return json.dumps(d, indent=2) + "\n"


def train(env="CartPole-v1", algo="a3c", *, out=None, force=False, resume=None, stop_at=None, final_eval=True,
          save_seconds=None, tensorboard=None, on_progress=None, on_eval=None, ray_address=None, **options):
    """Train ``algo`` on ``env`` and return a :class:`Run`.

    ``env``: an id (as ``asyncrl train --env``) or a zero-argument callable that returns a
    ``gymnasium.Env`` with a Discrete action space (or a Box one, for A3C) and a Box, Discrete (one-hot
    encoded) or composite (Tuple, Dict…, flattened) observation space (a class, a function,
    ``lambda: MyWrapper(MyEnv())``); it is called once per thread and once per
    evaluation. Such a run is saved under the id ``python:<name>``, which ``asyncrl eval`` and
    ``--resume`` cannot rebuild; evaluate it from Python with ``agent.evaluate(env=...)``.

    ``**options``: any :class:`~numba_a3c.config.TrainConfig` field (``steps``, ``threads``,
    ``lr``, ``hidden=(64, 64)``…); what is not given comes from the preset, as in the CLI.
    ``out``, ``force``, ``resume``, ``stop_at``, ``save_seconds`` and ``tensorboard`` are the
    CLI's ``--out``… options. ``on_progress(progress)`` is called every ``log_interval`` seconds and
    ``on_eval(evaluation)`` after each periodic evaluation (from the evaluation thread); either
    stops the run (saved, status "stopped") by returning False. An exception in a callback stops
    the run too, and is raised again once the run is saved.

    ``nodes=N`` trains on N Ray node actors of ``threads`` threads each (the ``ray`` extra), on
    this machine or, with ``ray_address="HOST:PORT"``, on a running cluster (docs/distributed.md).

    Raises :class:`ConfigError` for anything the CLI refuses with ``Error:``, before creating anything.
    """
    import numba_a3c.rundir as rundir
    from numba_a3c.checkpoint import CheckpointError
    from numba_a3c.distributed import check_nodes
    from numba_a3c.envs.base import EnvError
    from numba_a3c.launch import resumed_nodes, trainer_for
    from numba_a3c.trainer import SAVE_SECONDS
    from numba_a3c.validation import check_environment, check_resume, check_run_dir, check_stop_at

    make_env = None if isinstance(env, str) else env
    history, failure, holder = [], [], {}

    def stop(source):
        holder.setdefault("stopped_by", source)
        holder["trainer"].request_stop()

    def progress_hook(p):
        history.append(p)
        if "writer" in holder:
            holder["writer"].progress(p, holder["trainer"])
        if on_progress is not None:
            _call(on_progress, p, "on_progress")

    def eval_hook(ev):
        if "writer" in holder:
            holder["writer"].evaluation(ev)
        if on_eval is not None:
            _call(on_eval, ev, "on_eval")

    def _call(callback, value, name):
        try:
            if callback(value) is False:
                stop(name)
        except BaseException as exc:  # noqa: BLE001 - raised again after the run is saved
            failure.append(exc)
            stop(name)

    kwargs = dict(on_progress=progress_hook, on_eval=eval_hook, final_eval=final_eval,
                  save_seconds=SAVE_SECONDS if save_seconds is None else save_seconds)
    try:
        if resume is not None:
            _check_options(options)
            ckpt_path = check_resume(resume)
            run_dir = Path(out) if out is not None else ckpt_path.parent
            check_run_dir(run_dir, force=force, resuming_from=ckpt_path)
            if make_env is not None:
                kwargs["parts"] = _resumed_parts(ckpt_path, options, make_env)
            cls, extra = trainer_for(resumed_nodes(ckpt_path, options), ray_address)
            trainer = cls.from_checkpoint(ckpt_path, options, run_dir=run_dir, **kwargs, **extra)
            config = trainer.config
        else:
            config = configure(env, algo, **options)
            check_nodes(config)
            if config.nodes and make_env is not None:
                raise ConfigError("nodes= runs need an environment id each node can build (register the "
                                  "environment with gymnasium and give its id); a Python callable runs on one "
                                  "machine only")
            cls, extra = trainer_for(config.nodes, ray_address)
            parts = check_environment(config, make_env)
            run_dir = Path(out) if out is not None else _default_run_dir(config)
            check_run_dir(run_dir, force=force)
            trainer = cls(config, run_dir=run_dir, parts=parts, **kwargs, **extra)
        from numba_a3c.algorithms.state import C_T

        check_stop_at(stop_at, int(trainer.shared.counters[C_T]))
        if tensorboard is not None:
            from numba_a3c.tensorboard import check_logdir

            check_logdir(tensorboard)
        if trainer.config.nodes:
            trainer.connect()
    except (EnvError, CheckpointError) as exc:
        raise ConfigError(str(exc)) from None
    except ConfigError:
        raise
    except ValueError as exc:   # Trainer.from_checkpoint's refusals
        raise ConfigError(str(exc)) from None
    holder["trainer"] = trainer
    try:
        if out is not None or resume is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
        else:   # a new name, created atomically: parallel runs never share a directory
            run_dir = trainer.run_dir = rundir.create_unique(run_dir.parent, run_dir.name)
        lock = rundir.acquire(run_dir)
    except rundir.RunDirInUse as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot write the run directory {run_dir}: {exc}") from None
    writer = None
    try:
        if tensorboard is not None:
            from numba_a3c.tensorboard import TensorBoardWriter

            writer = holder["writer"] = TensorBoardWriter(tensorboard)
        rundir.remove_stale_temporaries(run_dir)
        (run_dir / "config.json").write_text(_config_json(config, make_env))
        result = trainer.run(stop_at=stop_at)
        if writer is not None and result.final_eval is not None:
            writer.evaluation(result.final_eval)
    finally:
        lock.release()
        if writer is not None:
            writer.close()
    if failure:
        raise failure[0]
    latest = run_dir / "latest.h5"
    agent = load(latest, env=make_env) if latest.exists() else None
    return Run(run_dir=run_dir, config=config, status=result.status, steps=result.steps,
               wall_time=result.wall_time, episodes=result.episodes, final_eval=result.final_eval, agent=agent,
               progress=history, evaluations=list(result.evaluations), stopped_by=holder.get("stopped_by", ""),
               error=result.error)


def _resumed_parts(ckpt_path, options, make_env):
    """The run's parts for resuming a checkpoint of a callable-made environment on ``make_env``."""
    import numba_a3c.checkpoint as checkpoint
    from numba_a3c.envs.registry import callable_env_id
    from numba_a3c.validation import check_environment

    saved = checkpoint.load(ckpt_path, whole_log=False).config
    if saved.env != callable_env_id(make_env):
        raise ConfigError(f"the checkpoint was trained on {saved.env}, not on {callable_env_id(make_env)}")
    changes = {k: v for k, v in options.items() if v is not None}
    return check_environment(saved.replace(**changes), make_env)


class Agent:
    """A trained policy (a loaded checkpoint): :meth:`act`, :meth:`predict`, :meth:`evaluate`.

    ``config`` is the run's :class:`~numba_a3c.config.TrainConfig`, ``global_step`` how far it
    was trained and ``path`` the checkpoint file it came from.
    """

    def __init__(self, ckpt, path, env=None):
        from numba_a3c.nn.network import Network

        self.checkpoint = ckpt
        self.path = Path(path)
        self.config = ckpt.config
        self.global_step = int(ckpt.global_step)
        self.network = Network(ckpt.spec)
        self._env = env
        self._policies = {}
        self._size = int(np.prod(ckpt.spec.input_shape))

    def __repr__(self):
        return f"Agent({self.config.algo} on {self.config.env}, step {self.global_step:,}, {self.path})"

    def _policy(self, epsilon, stochastic):
        from numba_a3c.evaluate import Policy

        if stochastic and epsilon:
            raise ValueError("stochastic=True and epsilon exclude each other: sample π, or act ε-greedily")
        if stochastic and self.checkpoint.spec.heads == "q":
            raise ValueError(f"stochastic=True samples the policy π, but this {self.config.algo} agent has Q values "
                             f"only; use epsilon=")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon {epsilon}: must be in [0, 1]")
        mode = "stochastic" if stochastic else "epsilon" if epsilon else "greedy"
        key = (mode, float(epsilon))
        if key not in self._policies:
            self._policies[key] = Policy(self.network, self.checkpoint.theta, mode, epsilon, seed=0,
                                         observations=self.checkpoint.frozen_observations())
        return self._policies[key]

    def reset(self):
        """Start a new episode: a recurrent agent's (``--network lstm``) state (h, c) ← 0. Its
        :meth:`act` carries the state from call to call, so call this at every episode's start."""
        for policy in self._policies.values():
            policy.reset()

    def act(self, obs, epsilon=0.0, stochastic=False):
        """The action for one observation: greedy (argmax), ε-greedy with ``epsilon``, or sampled
        from π with ``stochastic=True`` (A3C agents). A recurrent agent remembers the observations
        since its last :meth:`reset`. The observation is the environment's own: a state index where
        the network reads it one-hot, an (H, W, C) image where it reads (C, H, W); the action is the
        environment's too (k + start for a Discrete(n, start) action space)."""
        spec = self.checkpoint.spec
        if _raw_observation(obs, spec):
            from numba_a3c.envs.base import encode_observation

            obs = encode_observation(obs, spec.input_encoding, spec.input_shape)
        obs = np.asarray(obs, np.float32)
        if obs.size != self._size:
            raise ValueError(f"an observation of shape {obs.shape}; this agent reads {self._size} numbers "
                             f"({self.checkpoint.spec.input_shape})")
        action = self._policy(epsilon, stochastic)(obs)
        return action + spec.action_start if spec.action_start else action

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        """``(action, None)`` as in Stable-Baselines3: greedy when ``deterministic``, else sampled
        from π (A3C) or ε-greedy with the run's evaluation ε (Q methods, at least 0.05). A batch of
        observations gives an array of actions. A recurrent agent resets its state where
        ``episode_start`` is true."""
        kw = self._mode(deterministic)
        if episode_start is not None and np.any(episode_start):
            self.reset()
        if isinstance(observation, (tuple, dict)):   # one composite observation (Tuple or Dict space)
            return self.act(observation, **kw), None
        obs = np.asarray(observation, np.float32)
        if obs.size != self._size and obs.ndim >= 2 and obs[0].size == self._size:
            dtype = np.float32 if self.checkpoint.spec.heads == "gaussian" else np.int64
            return np.array([self.act(o, **kw) for o in obs], dtype), None
        return self.act(obs, **kw), None

    def _mode(self, deterministic):
        if deterministic:
            return {}
        if self.checkpoint.spec.heads != "q":
            return {"stochastic": True}
        return {"epsilon": self.config.eval_epsilon or 0.05}

    def evaluate(self, episodes=10, env=None, epsilon=None, stochastic=False, seed=0, max_steps=0, env_kwargs=None):
        """Play ``episodes`` episodes and return the dict ``asyncrl eval --json`` prints (``mean``,
        ``std``, ``returns``, ``lengths``…). ``env``: the training environment when None, else an
        id, a zero-argument callable or a ``gymnasium.Env`` instance (not closed here).
        ``env_kwargs``: a dict of settings changed or added over the run's own (``asyncrl eval
        --env-kwargs``), e.g. ``{"repeat_action_probability": 0.25}`` for sticky Atari actions; with
        an ``env`` id, its settings instead."""
        import dataclasses
        import json

        from numba_a3c.inspection import evaluate_checkpoint, evaluation_result, with_env_kwargs

        if episodes < 1:
            raise ValueError(f"episodes {episodes}: must be at least 1")
        mode = "stochastic" if stochastic else "epsilon" if epsilon is not None else "greedy"
        if mode != "greedy":
            self._policy(epsilon or 0.0, stochastic)    # the same checks as act()
        items = [f"{k}={json.dumps(v)}" for k, v in (env_kwargs or {}).items()]
        ckpt, env_info = self.checkpoint, None
        if items and env is None and self._env is None:
            # the training environment with these settings: evaluate_checkpoint makes it from the config
            ckpt = dataclasses.replace(ckpt, config=with_env_kwargs(ckpt.config, items))
        else:
            env_info = self._env_info(env, items)
        t0 = time.monotonic()
        returns, lengths, _ = evaluate_checkpoint(ckpt, episodes=episodes, mode=mode,
                                                  epsilon=epsilon or 0.0, seed=seed, max_steps=max_steps,
                                                  env_info=env_info)
        return evaluation_result(self.path, ckpt, mode, epsilon, seed, returns, lengths, time.monotonic() - t0)

    def _env_info(self, env, items=()):
        """The EnvInfo :meth:`evaluate` plays: ``env``'s, else the training environment's, with the
        "KEY=VALUE" ``items`` set (environments made from an id only)."""
        import gymnasium

        from numba_a3c.build import environment
        from numba_a3c.envs.registry import describe_callable, describe_env

        env = self._env if env is None else env
        if items and env is not None and not isinstance(env, str):
            raise ValueError("env_kwargs set an environment made from an id: give env as an id or leave it out")
        if env is None:
            return environment(self.config)
        if isinstance(env, str):
            return describe_env(env, env_kwargs=items)
        if isinstance(env, gymnasium.Env):
            class Borrowed(gymnasium.Wrapper):
                def close(self):       # the caller's instance: evaluated, not closed
                    pass

            borrowed = Borrowed(env)
            return describe_callable(lambda: borrowed)
        return describe_callable(env)

    def save(self, path):
        """Copy this agent's checkpoint to ``path`` (a file that :func:`load` and ``asyncrl eval`` read)."""
        shutil.copyfile(self.path, path)
        return Path(path)


def load(path, env=None):
    """The :class:`Agent` saved in ``path``: a checkpoint file, a run directory (its latest.h5) or
    the name of a shipped checkpoint (``"CartPole-v1-a3c"``), as ``asyncrl eval`` takes.
    ``env``: the callable (or id) :meth:`Agent.evaluate` plays by default, for a checkpoint of an
    environment made by a Python callable. Raises :class:`~numba_a3c.checkpoint.CheckpointError`."""
    import numba_a3c.checkpoint as checkpoint
    from numba_a3c.inspection import find_checkpoint

    file = find_checkpoint(path)
    return Agent(checkpoint.load(file), file, env=env)


def _raw_observation(obs, spec):
    """Whether ``obs`` is an environment's raw observation that the network reads encoded: a state
    index (one-hot), an (H, W, C) image (read as (C, H, W)), or a composite one (a tuple, a dict, a
    MultiDiscrete's integers) where the network reads it flattened."""
    if spec.input_encoding.startswith("flatten:"):
        encoded = isinstance(obs, np.ndarray) and obs.dtype.kind == "f" and obs.shape == tuple(spec.input_shape)
        return not encoded
    if spec.input_encoding == "one-hot":
        return np.size(obs) == 1
    if spec.input_encoding == "hwc":
        c, h, w = spec.input_shape
        return np.shape(obs) == (h, w, c)
    return False
