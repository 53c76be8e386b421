"""Gymnasium environments that misbehave on purpose, for tests/test_robustness.py.

Importing this module registers them; a test runs the real CLI with them in a subprocess::

    python -c "import robustness_envs; from numba_a3c.cli.main import main; main()" train --env Robust/FailingStep-v0

Each is a trivial 4-dimensional random walk with two actions and 20-step episodes; only the
environment of worker thread 1 misbehaves (the trainer seeds thread k's environment with
``seed * 1000 + k``; an evaluation environment whose first reset seed ends in 001 misbehaves
too), after ``FAULT_AFTER`` of its steps:

* ``Robust/FailingStep-v0``: ``step`` raises RuntimeError.
* ``Robust/NaNReward-v0``: ``step`` returns a NaN reward.
* ``Robust/BlockingStep-v0``: ``step`` never returns (it sleeps forever). When it blocks it sets
  :data:`BLOCKED` and touches the file named by the environment variable ``ROBUST_BLOCKED_MARK``
  (if set), so a test waits for the block itself rather than for a step count; with
  ``BlockingStep.others_wait`` the healthy threads wait for it at their ``FAULT_AFTER``-th step.
* ``Robust/FailingReset-v0``: the first ``reset`` raises OSError (at once, not after FAULT_AFTER).
"""

import os
import threading
import time
from pathlib import Path

import gymnasium
import numpy as np

FAULT_AFTER = 2000
FAULTY_THREAD = 1
BLOCKED = threading.Event()     # set when a BlockingStep environment has blocked (clear it before a test)


class _Walk(gymnasium.Env):
    fault = None
    others_wait = False

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.faulty = False
        self.steps = 0
        self.t = 0
        self.x = np.zeros(4, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None and seed % 1000 == FAULTY_THREAD:
            self.faulty = True   # sticky: later resets with other seeds (evaluation episodes) keep it
        if self.faulty and self.fault == "reset":
            raise OSError("injected failure: the simulator could not start")
        self.t = 0
        self.x = self.np_random.normal(size=4).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        reward = 1.0 if action == (self.x[0] > 0) else 0.0
        if self.faulty and self.steps >= FAULT_AFTER:
            if self.fault == "raise":
                raise RuntimeError(f"injected failure at step {self.steps}")
            if self.fault == "nan":
                reward = float("nan")
            if self.fault == "block":
                BLOCKED.set()
                if os.environ.get("ROBUST_BLOCKED_MARK"):
                    Path(os.environ["ROBUST_BLOCKED_MARK"]).touch()
                while True:
                    time.sleep(1.0)
        elif self.others_wait and self.steps >= FAULT_AFTER:
            BLOCKED.wait(60.0)   # the faulty thread blocks first, however the threads are scheduled
        self.x = self.np_random.normal(size=4).astype(np.float32)
        return self.x.copy(), reward, False, self.t >= 20, {}


class FailingStep(_Walk):
    fault = "raise"


class NaNReward(_Walk):
    fault = "nan"


class BlockingStep(_Walk):
    fault = "block"


class Healthy(_Walk):
    fault = None


class FailingReset(_Walk):
    fault = "reset"


for _name, _cls in (("FailingStep", FailingStep), ("NaNReward", NaNReward), ("BlockingStep", BlockingStep),
                    ("FailingReset", FailingReset), ("Healthy", Healthy)):
    _id = f"Robust/{_name}-v0"
    if _id not in gymnasium.envs.registry:
        gymnasium.register(_id, entry_point=_cls)
