"""Native environments against gymnasium's, step by step from the same state with the same actions."""

import gymnasium
import numpy as np
import pytest

from numba_a3c.envs.base import EnvError
from numba_a3c.envs.native import (
    CATCH_COLS,
    CATCH_ROWS,
    ENV_STATE_SIZE,
    NATIVE_ENVS,
    NativeEnv,
    env_reset,
    env_step,
    env_step_box,
)
from numba_a3c.envs.registry import describe_env
from numba_a3c.rng import new_rng


def _run_against_gym(name, set_gym_state, episodes=5, seed=0):
    spec = NATIVE_ENVS[name]
    rng = np.random.default_rng(seed)
    gym_env = gymnasium.make(name)
    steps_checked = 0
    for episode in range(episodes):
        state = np.zeros(ENV_STATE_SIZE)
        obs = np.zeros(spec.obs_shape, np.float32)
        agent_rng = new_rng(seed * 100 + episode)
        env_reset(spec.env_id, state, agent_rng, obs)
        gym_obs, _ = gym_env.reset(seed=episode)
        set_gym_state(gym_env.unwrapped, state)
        while True:
            a = int(rng.integers(spec.n_actions))
            r, term, trunc = env_step(spec.env_id, state, a, agent_rng, obs)
            gym_obs, gr, gterm, gtrunc, _ = gym_env.step(a)
            np.testing.assert_array_equal(obs, gym_obs, err_msg=f"{name} step {steps_checked}")
            assert (r, term, trunc) == (gr, gterm, gtrunc), f"{name} step {steps_checked}"
            steps_checked += 1
            if term or trunc:
                break
    gym_env.close()
    return steps_checked


def test_cartpole_matches_gymnasium():
    def set_state(env, state):
        env.state = state[:4].copy()

    assert _run_against_gym("CartPole-v1", set_state, episodes=20) > 200


def test_cartpole_truncates_at_500_steps_like_gymnasium():
    # A balancing controller (push towards the fall) keeps the pole up until the time limit.
    state = np.zeros(ENV_STATE_SIZE)
    obs = np.zeros(4, np.float32)
    rng = new_rng(1)
    env_reset(0, state, rng, obs)
    gym_env = gymnasium.make("CartPole-v1")
    gym_env.reset(seed=0)
    gym_env.unwrapped.state = state[:4].copy()
    for t in range(500):  # noqa: B007 - t is checked after the loop
        a = 1 if obs[2] + 0.5 * obs[3] > 0 else 0
        # The dynamics are chaotic and numba's cos/sin may differ from libm's by an ulp, so each
        # step starts both from the same state; the time limit is gymnasium's TimeLimit wrapper.
        gym_env.unwrapped.state = state[:4].copy()
        r, term, trunc = env_step(0, state, a, rng, obs)
        gobs, gr, gterm, gtrunc, _ = gym_env.step(a)
        np.testing.assert_allclose(obs, gobs, rtol=1e-6, atol=1e-9)
        assert (term, trunc) == (gterm, gtrunc)
        if term:
            pytest.fail("the controller should balance the pole")
    assert trunc and not term and t == 499


def test_acrobot_matches_gymnasium():
    def set_state(env, state):
        env.state = state[:4].copy()

    assert _run_against_gym("Acrobot-v1", set_state, episodes=2) >= 1000


def test_acrobot_reset_is_in_gymnasium_range():
    state = np.zeros(ENV_STATE_SIZE)
    obs = np.zeros(6, np.float32)
    rng = new_rng(3)
    for _ in range(100):
        env_reset(1, state, rng, obs)
        assert np.all(np.abs(state[:4]) <= 0.1) and state[4] == 0
        assert state[0] == np.float32(state[0]), "initial angles are float32 values, as in gymnasium"


def test_pendulum_matches_gymnasium():
    # Torques drawn beyond the bounds [−2, 2] too: both environments clip them the same way.
    spec = NATIVE_ENVS["Pendulum-v1"]
    rng = np.random.default_rng(0)
    gym_env = gymnasium.make("Pendulum-v1")
    steps_checked = 0
    for episode in range(5):
        state = np.zeros(ENV_STATE_SIZE)
        obs = np.zeros(3, np.float32)
        agent_rng = new_rng(episode)
        env_reset(spec.env_id, state, agent_rng, obs)
        assert abs(state[0]) <= np.pi and abs(state[1]) <= 1.0
        gym_env.reset(seed=episode)
        gym_env.unwrapped.state = state[:2].copy()
        while True:
            a = np.array([rng.uniform(-3.0, 3.0)], np.float32)
            r, term, trunc = env_step_box(spec.env_id, state, a, agent_rng, obs)
            gobs, gr, gterm, gtrunc, _ = gym_env.step(a)
            np.testing.assert_array_equal(obs, gobs, err_msg=f"Pendulum-v1 step {steps_checked}")
            np.testing.assert_array_equal(state[:2], gym_env.unwrapped.state, err_msg=f"step {steps_checked}")
            # numpy's float32 u**2 calls libm's powf (not correctly rounded): the 0.001 u² cost term may
            # differ in its last float32 bit, ~1e-10.
            assert abs(r - gr) <= 1e-9, f"Pendulum-v1 step {steps_checked}: reward {r!r} vs {gr!r}"
            assert (term, trunc) == (gterm, gtrunc), f"Pendulum-v1 step {steps_checked}"
            steps_checked += 1
            if term or trunc:
                break
    gym_env.close()
    assert steps_checked == 5 * 200


def test_catch_rules():
    env = NativeEnv("Catch-v0", seed=0)
    outcomes = set()
    for episode in range(40):
        obs, _ = env.reset()
        assert obs.shape == (1, CATCH_ROWS, CATCH_COLS) and obs.dtype == np.float32
        assert obs.sum() == 2 and obs[0, 0].sum() == 1 and obs[0, -1, CATCH_COLS // 2] == 1
        ball_col = int(np.argmax(obs[0, 0]))
        # A policy that walks the paddle under the ball always catches it; staying put rarely does.
        chase = episode % 2 == 0
        for t in range(CATCH_ROWS - 1):
            paddle = int(np.argmax(obs[0, -1]))
            a = 1 + int(np.sign(ball_col - paddle)) if chase else 1
            obs, r, term, trunc, _ = env.step(a)
            if t < CATCH_ROWS - 2:
                assert (r, term) == (0.0, False)
                assert obs[0, t + 1, ball_col] == 1, "the ball falls one row per step, straight down"
        assert term and not trunc
        if chase:
            assert r == 1.0
        else:
            assert r == (1.0 if ball_col == CATCH_COLS // 2 else -1.0)
        outcomes.add(r)
    assert outcomes == {1.0, -1.0}


def test_paddle_stays_on_the_board():
    env = NativeEnv("Catch-v0", seed=1)
    obs, _ = env.reset()
    for _ in range(CATCH_ROWS - 1):
        obs, *_ = env.step(0)
    assert obs[0, -1, 0] == 1


@pytest.mark.parametrize("name", sorted(NATIVE_ENVS))
def test_native_env_renders_rgb_frames(name):
    env = NativeEnv(name, seed=0)
    env.reset()
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    env.step(0)
    assert env.render().shape == frame.shape


def test_describe_env_kinds_and_errors():
    assert describe_env("CartPole-v1").kind == "native"
    assert describe_env("CartPole-v1", force_gym=True).kind == "gym"
    assert describe_env("MountainCar-v0").kind == "gym"
    assert describe_env("Catch-v0").obs_shape == (1, CATCH_ROWS, CATCH_COLS)
    with pytest.raises(EnvError, match="Did you mean"):
        describe_env("CartPole-v2")
    with pytest.raises(EnvError, match="no gymnasium version"):
        describe_env("Catch-v0", force_gym=True)
    pendulum = describe_env("Pendulum-v1")
    assert (pendulum.kind, pendulum.n_actions, pendulum.action_low, pendulum.action_high) == ("native", 1, (-2.0,),
                                                                                              (2.0,))
    car = describe_env("MountainCarContinuous-v0")      # any Box-action gymnasium environment, Python path
    assert (car.kind, car.continuous, car.n_actions, car.action_low, car.action_high) == ("gym", True, 1, (-1.0,),
                                                                                          (1.0,))
    assert not describe_env("CartPole-v1").continuous


def test_discrete_observations_are_one_hot_encoded(tmp_path):
    from numba_a3c import checkpoint
    from numba_a3c.config import resolve
    from numba_a3c.envs.registry import make_python_env
    from numba_a3c.inspection import evaluate_checkpoint
    from numba_a3c.trainer import Trainer

    info = describe_env("FrozenLake-v1")
    assert (info.obs_shape, info.n_actions, info.obs_encoding) == ((16,), 4, "one-hot")
    env = make_python_env(info, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (16,) and obs[0] == 1.0 and obs.sum() == 1.0  # start: state 0
    raw = gymnasium.make("FrozenLake-v1")
    raw.reset(seed=0)
    for a in (2, 1, 1, 2):   # the same seed and actions: the one-hot is the raw state index
        k, *_ = raw.step(a)
        obs, *_ = env.step(a)
        assert int(np.argmax(obs)) == int(k) and obs.sum() == 1.0
    # It trains, saves the encoding with the network, and evaluates from the checkpoint.
    config = resolve({"env": "FrozenLake-v1", "steps": 2000, "threads": 1, "eval_episodes": 2})
    result = Trainer(config, run_dir=tmp_path / "run").run()
    assert result.status == "finished"
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.spec.input_encoding == "one-hot" and ck.spec.input_shape == (16,)
    returns, lengths, _ = evaluate_checkpoint(ck, episodes=2)
    assert lengths.min() >= 1


class Composite(gymnasium.Env):
    """Observations of every composite kind: a Dict of a Box, a MultiDiscrete and a Tuple of a
    Discrete starting at 1 and a MultiBinary. Reward 1 when the action equals the Discrete's value − 1."""

    observation_space = gymnasium.spaces.Dict({
        "pos": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
        "grid": gymnasium.spaces.MultiDiscrete([3, 2]),
        "flags": gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2, start=1), gymnasium.spaces.MultiBinary(2))),
    })
    action_space = gymnasium.spaces.Discrete(2)

    def _obs(self):
        k = int(self.np_random.integers(1, 3))
        self.answer = k - 1
        return {"pos": np.array([0.5, -0.25], np.float32), "grid": np.array([2, 1]),
                "flags": (k, np.array([1, 0], np.int8))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(action == self.answer)
        self.t += 1
        return self._obs(), reward, False, self.t >= 10, {}


def test_composite_observations_are_flattened(tmp_path):
    """Tuple, Dict, MultiDiscrete and MultiBinary observations reach the network as one vector:
    discrete parts one-hot, numeric parts as they are; training, checkpoints, eval and Agent.act
    (which takes the environment's own tuple or dict) all read them the same way."""
    import numba_a3c
    from numba_a3c import checkpoint
    from numba_a3c.config import resolve
    from numba_a3c.envs.base import flatten_encoding, flatten_observation
    from numba_a3c.envs.registry import describe_callable, make_python_env
    from numba_a3c.inspection import evaluate_checkpoint
    from numba_a3c.trainer import Trainer

    info = describe_env("Blackjack-v1")   # Tuple(Discrete(32), Discrete(11), Discrete(2))
    assert info.obs_shape == (45,) and info.obs_encoding == (
        'flatten:[[[0],"discrete",32,0],[[1],"discrete",11,0],[[2],"discrete",2,0]]')
    x = flatten_observation((14, 10, 1), info.obs_encoding)
    assert x.dtype == np.float32 and x.shape == (45,) and np.flatnonzero(x).tolist() == [14, 32 + 10, 32 + 11 + 1]
    env = make_python_env(info, seed=0)
    obs, _ = env.reset(seed=3)
    raw, _ = gymnasium.make("Blackjack-v1").reset(seed=3)
    np.testing.assert_array_equal(obs, flatten_observation(raw, info.obs_encoding))

    encoding, size = flatten_encoding(Composite.observation_space)
    assert size == 2 + 3 + 2 + 2 + 2
    # gymnasium's Dict orders its keys: flags (k = 2 of {1, 2}; bits 1, 0), grid (2 of 3, 1 of 2), pos
    by_hand = [0, 1, 1, 0, 0, 0, 1, 0, 1, 0.5, -0.25]
    np.testing.assert_array_equal(flatten_observation({"pos": np.array([0.5, -0.25]), "grid": np.array([2, 1]),
                                                       "flags": (2, np.array([1, 0]))}, encoding), by_hand)
    with pytest.raises(ValueError, match=r"outside \[1, 3\)"):
        flatten_observation({"pos": np.zeros(2), "grid": np.array([0, 0]), "flags": (0, np.zeros(2))}, encoding)

    run = numba_a3c.train(Composite, steps=3000, threads=1, eval_episodes=2, out=tmp_path / "run")
    assert run.status == "finished" and len(run.final_eval.returns) == 2
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.spec.input_encoding == describe_callable(Composite).obs_encoding == encoding
    assert run.agent.evaluate(episodes=2)["lengths"] == [10, 10]
    raw, _ = Composite().reset(seed=1)
    assert run.agent.act(raw) == run.agent.act(flatten_observation(raw, encoding)) == run.agent.predict(raw)[0]

    # Blackjack from the command line's path: trained, saved, evaluated from the checkpoint
    config = resolve({"env": "Blackjack-v1", "steps": 2000, "threads": 1, "eval_episodes": 2})
    assert Trainer(config, run_dir=tmp_path / "bj").run().status == "finished"
    returns, lengths, _ = evaluate_checkpoint(checkpoint.load(tmp_path / "bj" / "latest.h5"), episodes=3)
    assert lengths.min() >= 1

    class Texty(Composite):
        observation_space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2), gymnasium.spaces.Text(5)))

    with pytest.raises(EnvError, match=r"a Text part\[1\]: these methods read Box, Discrete"):
        describe_callable(Texty)


class Thermostat(gymnasium.Env):
    """Actions Discrete(3, start=-1): −1 cools, 0 holds, +1 heats; reward 1 for holding at 0, and
    an assertion that every action the environment receives is one of its own."""

    observation_space = gymnasium.spaces.Box(-5.0, 5.0, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(3, start=-1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.temp, self.t = int(self.np_random.integers(-2, 3)), 0
        return np.array([self.temp], np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), f"action {action!r} is not in {self.action_space}"
        self.temp = int(np.clip(self.temp + int(action), -5, 5))
        self.t += 1
        return np.array([self.temp], np.float32), float(self.temp == 0), False, self.t >= 20, {}


def test_discrete_actions_that_do_not_start_at_zero(tmp_path):
    """A Discrete(n, start) action space: the network's action k reaches the environment as k + start
    in training and evaluation, the checkpoint records start, and Agent.act returns the environment's action."""
    import numba_a3c
    from numba_a3c import checkpoint
    from numba_a3c.envs.registry import describe_callable

    assert describe_callable(Thermostat).action_start == -1 and describe_env("CartPole-v1").action_start == 0
    run = numba_a3c.train(Thermostat, algo="nstep-q", steps=3000, threads=2, eval_episodes=2, out=tmp_path / "run")
    assert run.status == "finished" and len(run.final_eval.returns) == 2
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.spec.action_start == -1 and ck.spec.n_actions == 3
    assert run.agent.evaluate(episodes=2)["lengths"] == [20, 20]
    actions = {run.agent.act(np.array([t], np.float32), epsilon=1.0) for t in range(-3, 4) for _ in range(10)}
    assert actions == {-1, 0, 1}


CORRIDOR = '''
import gymnasium
import numpy as np


class Corridor(gymnasium.Env):
    """Walk right to the end of a corridor of `length` cells (reward 1 there)."""

    def __init__(self, length=4):
        self.length = length
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length
        return np.array([self.pos / self.length], np.float32), float(done), done, False, {}


gymnasium.register("Corridor-v0", entry_point=Corridor, max_episode_steps=50)
'''


def test_module_colon_id_and_env_kwargs(tmp_path, monkeypatch):
    """gymnasium's module:Env-id imports the module (which registers the id); --env-kwargs go to
    gymnasium.make; both are saved with the run, so evaluation rebuilds the same environment."""
    from numba_a3c import checkpoint
    from numba_a3c.config import resolve
    from numba_a3c.inspection import evaluate_checkpoint
    from numba_a3c.trainer import Trainer

    (tmp_path / "corridor_pkg.py").write_text(CORRIDOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    info = describe_env("corridor_pkg:Corridor-v0", env_kwargs=("length=7",))
    assert (info.env_id, info.obs_shape, info.n_actions, dict(info.make_kwargs)) == ("Corridor-v0", (1,), 2,
                                                                                    {"length": 7})
    config = resolve({"env": "corridor_pkg:Corridor-v0", "env_kwargs": ("length=3",), "steps": 3000, "threads": 1,
                      "eval_episodes": 3})
    assert Trainer(config, run_dir=tmp_path / "run").run().status == "finished"
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.config.env == "corridor_pkg:Corridor-v0" and ck.config.env_kwargs == ("length=3",)
    _, lengths, _ = evaluate_checkpoint(ck, episodes=2)
    assert lengths.min() >= 3                         # at least `length` steps to the end of the corridor
    assert dict(describe_env("FrozenLake-v1", env_kwargs=("map_name=8x8", "is_slippery=false")).make_kwargs) == {
        "map_name": "8x8", "is_slippery": False}
    assert describe_env("FrozenLake-v1", env_kwargs=("map_name=8x8",)).obs_shape == (64,)
    for env_id, kwargs, message in [("no_such_module:X-v0", (), "could not import 'no_such_module'"),
                                    ("FrozenLake-v1", ("map_name",), "KEY=VALUE"),
                                    ("FrozenLake-v1", ("bogus=1",), "could not create FrozenLake-v1 with bogus=1"),
                                    ("FrozenLake-v1", ("map_name=9x9",), "with map_name='9x9': KeyError: '9x9'"),
                                    ("CartPole-v1", ("x=1",), "native .* takes none \\(train with --gym")]:
        with pytest.raises(EnvError, match=message):
            describe_env(env_id, env_kwargs=kwargs)


def test_cartpole_novel_is_gymnasium_cartpole_with_the_velocities_hidden():
    # Stepped beside gymnasium's CartPole-v1 from the same state with the same actions: the same
    # rewards, termination and truncation, and exactly (x, θ) of gymnasium's observation.
    spec = NATIVE_ENVS["CartPoleNoVel-v1"]
    assert spec.obs_shape == (2,) and spec.n_actions == 2 and spec.max_episode_steps == 500
    rng = np.random.default_rng(0)
    gym_env = gymnasium.make("CartPole-v1")
    steps = 0
    for episode in range(20):
        state = np.zeros(ENV_STATE_SIZE)
        obs = np.zeros(2, np.float32)
        agent_rng = new_rng(episode)
        env_reset(spec.env_id, state, agent_rng, obs)
        gym_env.reset(seed=episode)
        gym_env.unwrapped.state = state[:4].copy()
        np.testing.assert_array_equal(obs, np.float32(state[[0, 2]]))
        while True:
            a = int(rng.integers(2))
            r, term, trunc = env_step(spec.env_id, state, a, agent_rng, obs)
            gym_obs, gr, gterm, gtrunc, _ = gym_env.step(a)
            np.testing.assert_array_equal(obs, gym_obs[[0, 2]], err_msg=f"step {steps}")
            assert (r, term, trunc) == (gr, gterm, gtrunc), f"step {steps}"
            steps += 1
            if term or trunc:
                break
    gym_env.close()
    assert steps > 200
    # a balancing controller that reads the hidden velocities keeps it up until the 500-step limit
    state, obs, rng1 = np.zeros(ENV_STATE_SIZE), np.zeros(2, np.float32), new_rng(1)
    env_reset(spec.env_id, state, rng1, obs)
    for t in range(500):  # noqa: B007 - t is checked after the loop
        r, term, trunc = env_step(spec.env_id, state, 1 if state[2] + 0.5 * state[3] > 0 else 0, rng1, obs)
        assert not term
    assert trunc and t == 499
    assert describe_env("CartPoleNoVel-v1").obs_shape == (2,)
    with pytest.raises(EnvError, match="no gymnasium version"):
        describe_env("CartPoleNoVel-v1", force_gym=True)
