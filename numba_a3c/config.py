"""The run configuration: one typed place for every hyperparameter, with presets from ``data/``.

A value comes from, in increasing priority: the field's default below, the preset
(``data/presets/*.json``: its ``defaults``, then its entry for the algorithm; the environment's
own unless ``--preset NAME`` names another), then what the user gave on the command line. The
resolved configuration is printed at the start of a run and saved in the run directory and in
every checkpoint, so a run can always be reproduced.
The CLI builds its ``train`` options from these fields and their ``help`` metadata.
"""

import dataclasses
import json
from dataclasses import dataclass, field

from numba_a3c.algorithms.state import ALGORITHM_IDS, OPTIMIZER_IDS
from numba_a3c.data import data_path

ALGORITHMS = tuple(ALGORITHM_IDS)     # ("a3c", "nstep-q", "onestep-q", "sarsa")
OPTIMIZERS = tuple(OPTIMIZER_IDS)     # ("shared-rmsprop", "rmsprop", "momentum")
NETWORKS = ("mlp", "conv", "atari", "lstm", "atari-lstm", "auto")
RECURRENT_NETWORKS = ("lstm", "atari-lstm")   # A3C only: the other methods refuse them


def _f(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Everything that defines a training run."""

    algo: str = _f("a3c", "algorithm: a3c, nstep-q, onestep-q or sarsa", choices=ALGORITHMS)
    env: str = _f("CartPole-v1", "environment id: a native one (CartPole-v1, CartPoleNoVel-v1, Acrobot-v1, Catch-v0, "
                  "Pendulum-v1), any registered gymnasium id with discrete actions (or Box actions, A3C only), or "
                  "ALE/<Game>-v5")
    env_kwargs: tuple = _f((), "KEY=VALUE items passed to gymnasium.make (e.g. map_name=8x8 is_slippery=false; "
                           "values are read as JSON where they can be); for ALE/ ids the emulator's settings "
                           "repeat_action_probability, full_action_space, noop_max, max_num_frames_per_episode",
                           metavar="KEY=VALUE")
    preset: str = _f("", "the preset the other defaults come from: data/presets/NAME.json (e.g. atari, atari-paper, "
                     "default, CartPole-v1); if not given, the environment's own preset, else atari for ALE/ "
                     "ids, else default")
    threads: int = _f(2, "number of actor-learner threads (may exceed the number of cores)")
    steps: int = _f(200_000, "global step budget T_max (environment steps summed over all threads)")
    lr: float = _f(7e-4, "initial learning rate η (annealed linearly to 0 over the budget unless --no-anneal-lr)")
    anneal_lr: bool = _f(True, "anneal the learning rate linearly to 0 over the budget")
    gamma: float = _f(0.99, "discount factor γ")
    t_max: int = _f(5, "segment length: t_max for n-step Q and A3C, I_AsyncUpdate for the one-step methods")
    beta: float = _f(0.01, "entropy weight β (A3C)")
    value_weight: float = _f(1.0, "weight c_v of the value loss c_v·½(R − V)² (A3C): 1 is the paper's loss; smaller "
                                  "keeps the value's gradient from swamping a shared body")
    optimizer: str = _f("shared-rmsprop", "shared-rmsprop (the paper's), rmsprop (per-thread statistics) or "
                        "momentum (per-thread momentum SGD)", choices=OPTIMIZERS)
    rms_alpha: float = _f(0.99, "RMSProp decay α (also the momentum coefficient)")
    rms_eps: float = _f(0.1, "RMSProp ε, inside the square root")
    clip_norm: float = _f(40.0, "clip the gradient by this global norm (0: no clipping)")
    target_interval: int = _f(10_000, "I_target: refresh the target network every this many global steps (Q methods)")
    eps_anneal_steps: int = _f(100_000, "anneal ε from 1 to each thread's final ε over this many global steps")
    reward_clip: float = _f(0.0, "clip training rewards to [-c, c] (0: no clipping; Atari uses 1)")
    normalize_obs: bool = _f(False, "normalise vector observations by running mean and variance, shared by the "
                             "threads, clipped to +-5 (saved in checkpoints, applied by eval; the generic preset's "
                             "choice, numba_a3c/normalize.py)")
    normalize_reward: bool = _f(False, "give the learner rewards divided by a running standard deviation of the "
                                "discounted return, clipped to +-10; logged returns stay raw (the generic preset's "
                                "choice)")
    normalize_value: bool = _f(False, "A3C: the value head learns returns normalised by their moving mean and "
                               "standard deviation, rescaled so that V is unchanged when those move (PopArt)")
    normalize_advantage: bool = _f(False, "with --normalize-value, the policy reads the advantage in the same "
                                   "normalised units, A/σ (else in the rewards' own)")
    value_rate: float = _f(1e-4, "step size of the moving mean and variance of --normalize-value's returns")
    network: str = _f("mlp", "network: mlp (vector observations), conv (small images), atari (4x84x84 frames), "
                      "lstm (the MLP body, then an LSTM of the last --hidden size; a3c only), atari-lstm (the atari "
                      "body, then 256 LSTM cells; a3c only) or auto (conv for image observations, else mlp; the "
                      "generic preset's)", choices=NETWORKS)
    hidden: tuple = _f((64, 64), "hidden layer sizes of the MLP (or the dense layer of the conv net; with --network "
                       "lstm the last size is the LSTM's number of cells)")
    init: str = _f("uniform", "weight initialisation: uniform (U(±1/√fan_in), the paper's Torch7 default) or "
                   "orthogonal (gain √2 per ReLU layer, keeps the activation scale; docs/atari.md)",
                   choices=("uniform", "orthogonal"))
    activation: str = _f("relu", "hidden activation of the MLP: relu or tanh", choices=("relu", "tanh"))
    separate_value: bool = _f(False, "A3C with an MLP: the value V gets its own tower of the --hidden sizes instead "
                              "of sharing the policy's body")
    seed: int = _f(0, "random seed (parameters, exploration and environments)")
    eval_every: int = _f(0, "greedy evaluation every this many global steps, beside the workers (0: off)")
    eval_episodes: int = _f(10, "episodes per evaluation (periodic and final)")
    eval_epsilon: float = _f(0.0, "ε of the evaluation policy: 0 is greedy; Atari uses 0.05, the usual protocol, so a "
                             "policy that never presses FIRE after a lost life cannot stall an evaluation")
    gym: bool = _f(False, "use the gymnasium environment even where a native (Numba) one exists")
    env_processes: bool = _f(None, "run each worker (its Python environment and its learner) in a process of its own, "
                             "on the run's parameters in shared memory, so that a Python environment's step, which "
                             "holds the GIL, uses every core (numba_a3c/worker_processes.py)",
                             default_text="on for a gymnasium environment with 2 or more threads; off for one thread, "
                                          "Atari and native environments")
    save_every: int = _f(0, "save a checkpoint every this many global steps (0: only at the end)")
    log_interval: float = _f(1.0, "seconds between progress lines")
    nodes: int = _f(0, "Ray node actors, each running --threads threads (0: this process alone, without Ray); "
                    "needs the 'ray' extra, see docs/distributed.md")
    exchange_steps: int = _f(1000, "with --nodes: a node sends its changes to the parameter server and receives "
                             "the global parameters every this many of its own steps (0: by time only)")
    exchange_seconds: float = _f(0.0, "with --nodes: exchange also every this many seconds (0: by steps only)")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["env_kwargs"] = list(self.env_kwargs)
        return d

    @staticmethod
    def from_dict(d):
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        if "env_kwargs" in d:
            d["env_kwargs"] = tuple(str(item) for item in d["env_kwargs"])
        return TrainConfig(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def preset_names():
    """The names of the shipped presets (``data/presets/NAME.json``), sorted."""
    return sorted(p.stem for p in data_path("presets").glob("*.json"))


def preset_file(env_id, name=""):
    """The preset file that applies: ``name``'s if given, else ``env_id``'s own, the Atari one
    (for ALE/ ids) or the generic one. An unknown ``name`` raises ValueError listing the names."""
    if name:
        path = data_path("presets", f"{name}.json")
        if not path.exists():
            raise ValueError(f"unknown preset {name!r}; the shipped presets are {', '.join(preset_names())}")
        return path
    path = data_path("presets", env_id.replace("/", "_") + ".json")
    if path.exists():
        return path
    if env_id.startswith("ALE/"):
        return data_path("presets", "atari.json")
    return data_path("presets", "default.json")


def preset_values(env_id, algo, name=""):
    """The preset's values for this environment and algorithm (a dict of TrainConfig fields),
    with ``preset`` set to the name of the file they came from."""
    path = preset_file(env_id, name)
    with open(path) as fh:
        preset = json.load(fh)
    values = dict(preset.get("defaults", {}))
    values.update(preset.get("algorithms", {}).get(algo, {}))
    values["preset"] = path.stem
    return values


def resolve(overrides):
    """A TrainConfig from the user's ``overrides`` (None values are ignored) on top of the presets."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    base = TrainConfig()
    env = overrides.get("env", base.env)
    algo = overrides.get("algo", base.algo)
    values = base.to_dict()
    values.update(preset_values(env, algo, overrides.get("preset", "")))
    values.update(overrides)
    values["env"], values["algo"] = env, algo
    if values.get("nodes"):
        # The normaliser's statistics live in one process, so a preset's normalisation (the generic
        # preset's normalize_obs and normalize_value) yields to --nodes; asked for explicitly,
        # validation refuses the pair.
        for key in ("normalize_obs", "normalize_reward", "normalize_value", "normalize_advantage"):
            if key not in overrides:
                values[key] = False
    return TrainConfig.from_dict(values)
