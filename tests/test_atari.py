"""Atari through ale-py: the DeepMind preprocessing, lives and raw scores, the worker loop, and a
short training run of every method on a real ROM (Pong)."""

import json
import re

import numpy as np
import pytest

from numba_a3c.algorithms.state import TF_EPISODE_RETURN, TI_EPISODE_STEPS, TI_EPISODES, TI_N, TI_PENDING_ACTION
from numba_a3c.build import network_spec
from numba_a3c.config import TrainConfig, resolve
from numba_a3c.envs.atari import AtariEnv, describe_atari, make_atari_env
from numba_a3c.envs.base import EnvError
from numba_a3c.envs.registry import describe_env, make_python_env
from numba_a3c.nn.network import Network
from numba_a3c.trainer import Trainer
from numba_a3c.workers import Workers, compile_kernels, new_shared_state

pytestmark = pytest.mark.atari


# ----------------------------------------------------------------------------- description
def test_describe_gives_frames_scale_and_minimal_action_set():
    pong = describe_env("ALE/Pong-v5")
    assert (pong.kind, pong.obs_shape, pong.n_actions) == ("atari", (4, 84, 84), 6)
    assert pong.input_scale == pytest.approx(1 / 255)
    assert pong.max_episode_steps == 27_000          # 108,000 frames at action repeat 4
    assert describe_atari("ALE/Breakout-v5").n_actions == 4
    assert describe_atari("ALE/SpaceInvaders-v5").n_actions == 6


@pytest.mark.parametrize("env_id, expected", [
    ("ALE/Pongg-v5", "Did you mean ALE/Pong-v5"),
    ("ALE/spaceinvaders-v5", "did you mean ALE/SpaceInvaders-v5"),
    ("ALE/Pong-v4", "use ALE/Pong-v5"),
    ("ALE/NoSuchGame-v5", "unknown Atari game 'NoSuchGame'"),
    ("PongNoFrameskip-v4", "did you mean ALE/Pong-v5"),          # ids from older gym code
    ("SpaceInvadersDeterministic-v4", "did you mean ALE/SpaceInvaders-v5"),
    ("Breakout-v0", "did you mean ALE/Breakout-v5"),
    ("Pong-v5", "did you mean ALE/Pong-v5"),
])
def test_unknown_games_get_a_clear_error(env_id, expected):
    with pytest.raises(EnvError, match=expected):
        describe_env(env_id)


def test_atari_ids_use_the_atari_preset():
    c = resolve({"env": "ALE/Breakout-v5", "algo": "onestep-q"})
    assert (c.network, c.threads, c.t_max, c.reward_clip, c.clip_norm) == ("atari", 16, 5, 1.0, 40.0)
    assert (c.lr, c.rms_alpha, c.rms_eps, c.gamma) == (2e-4, 0.99, 0.1, 0.99)    # the Q methods' rate
    assert resolve({"env": "ALE/Breakout-v5", "algo": "a3c"}).lr == 7e-4
    assert resolve({"env": "ALE/Breakout-v5", "algo": "nstep-q", "lr": 7e-4}).lr == 7e-4     # --lr wins
    assert c.target_interval * 4 == 40_000           # I_target: 40,000 frames
    assert c.eps_anneal_steps * 4 == 4_000_000       # ε annealed over 4M frames
    # Sarsa's bootstrap needs θ⁻ close to θ (docs/algorithms/sarsa.md); the paper's preset keeps 40,000 frames
    assert resolve({"env": "ALE/Pong-v5", "algo": "sarsa"}).target_interval == 100
    assert resolve({"env": "ALE/Pong-v5", "algo": "sarsa", "preset": "atari-paper"}).target_interval == 10_000


def test_env_kwargs_set_the_emulator():
    """--env-kwargs of an ALE/ id: all 18 actions, a shorter truncation, and sticky actions that really
    replace the agent's (with probability 1 the first action, NOOP, repeats for ever)."""
    info = describe_env("ALE/Pong-v5", env_kwargs=("full_action_space=true", "max_num_frames_per_episode=4000"))
    assert (info.n_actions, info.max_episode_steps) == (18, 1000)
    assert info.make_kwargs == (("full_action_space", True), ("max_num_frames_per_episode", 4000))
    env = make_python_env(info, seed=0)
    try:
        assert env.action_space.n == 18
    finally:
        env.close()

    def frames(actions, **settings):
        env = make_atari_env("ALE/Pong-v5", seed=7, make_kwargs=tuple(settings.items()))
        try:
            out = [env.reset()[0].copy()]
            out += [env.step(int(a))[0].copy() for a in actions]
            return np.array(out)
        finally:
            env.close()

    moves = np.random.default_rng(0).choice([2, 3], size=120)       # RIGHT, LEFT: the paddle moves
    noops = np.zeros_like(moves)
    assert not np.array_equal(frames(moves), frames(noops))
    assert np.array_equal(frames(moves, repeat_action_probability=1.0), frames(noops))
    sticky = frames(moves, repeat_action_probability=0.25)
    assert np.array_equal(sticky, frames(moves, repeat_action_probability=0.25))   # seeded: reproducible
    assert not np.array_equal(sticky, frames(moves))


@pytest.mark.parametrize("item, expected", [
    ("mode=2", "ALE/Pong-v5 takes repeat_action_probability, full_action_space, noop_max"),
    ("repeat_action_probability=1.5", "repeat_action_probability must be a probability in"),
    ("noop_max=2.5", "noop_max must be a whole number of frames"),
    ("full_action_space=1", "full_action_space must be true or false"),
    ("max_num_frames_per_episode=0", "must be a whole number of frames >= 4"),
])
def test_bad_env_kwargs_of_an_atari_id_are_refused_in_one_line(item, expected):
    with pytest.raises(EnvError, match=re.escape(expected)):
        describe_env("ALE/Pong-v5", env_kwargs=(item,))


def test_eval_changes_a_setting_of_the_trained_game():
    """``asyncrl eval --env-kwargs`` plays the shipped Pong agent with sticky actions; a setting that
    changes the action count is refused in one line (exit 2)."""
    from click.testing import CliRunner

    from numba_a3c.cli.main import cli

    result = CliRunner().invoke(cli, ["eval", "Pong-v5-a3c", "-n", "1", "--max-steps", "50", "--json",
                                      "--env-kwargs", "repeat_action_probability=0.25"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["env_kwargs"] == ["repeat_action_probability=0.25"]
    result = CliRunner().invoke(cli, ["eval", "Pong-v5-a3c", "--env-kwargs", "full_action_space=true"])
    assert result.exit_code == 2
    assert "6 actions, but ALE/Pong-v5 with full_action_space=true gives (4, 84, 84) and 18" in result.output
    assert len(result.output.strip().splitlines()) == 1
    import numba_a3c

    # the Python API does the same
    agent = numba_a3c.load("Pong-v5-a3c")
    played = agent.evaluate(episodes=1, max_steps=50, env_kwargs={"repeat_action_probability": 0.25})
    assert played["env_kwargs"] == ["repeat_action_probability=0.25"]
    assert agent.evaluate(episodes=1, max_steps=50)["env_kwargs"] == []


# ----------------------------------------------------------------------------- preprocessing
def test_observations_are_stacked_uint8_frames_oldest_first():
    env = make_atari_env("ALE/Pong-v5", seed=0)
    try:
        obs, _ = env.reset(seed=3)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        rng = np.random.default_rng(0)
        changed = 0
        for _ in range(60):
            prev = obs.copy()
            obs, *_ = env.step(int(rng.integers(6)))
            assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
            np.testing.assert_array_equal(obs[:3], prev[1:])   # shifted by one: newest frame is obs[3]
            changed += not np.array_equal(obs[3], prev[3])
        assert changed > 30                                  # the newest frame is new
        assert 0 < obs.mean() < 255
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    finally:
        env.close()


def test_seeded_reset_is_reproducible():
    def roll(seed):
        env = make_atari_env("ALE/Pong-v5")
        try:
            obs, _ = env.reset(seed=seed)
            out = [obs.copy()]
            for a in [0, 2, 3, 1, 2, 2, 3, 0] * 5:
                out.append(env.step(a)[0].copy())
            return np.array(out)
        finally:
            env.close()

    np.testing.assert_array_equal(roll(7), roll(7))


def test_lives_raw_rewards_and_the_auto_reset():
    """Space Invaders (3 lives, 5-30 points an invader) played at random to the end: a lost life
    is flagged but neither terminates nor resets (the frame stack runs on); rewards are raw
    scores; the ending step returns the final frame and reset() then gives the new episode."""
    env = make_atari_env("ALE/SpaceInvaders-v5")
    rng = np.random.default_rng(1)
    try:
        obs, info = env.reset(seed=11)
        assert info["lives"] == 3
        lives_lost, total, rewards = 0, 0.0, set()
        for _ in range(20_000):
            prev = obs.copy()
            obs, r, terminated, truncated, info = env.step(int(rng.integers(6)))
            assert info["raw_reward"] == r
            rewards.add(r)
            total += r
            if info["life_lost"]:
                lives_lost += 1
                assert not terminated and info["lives"] == 3 - lives_lost
                np.testing.assert_array_equal(obs[:3], prev[1:])
            if terminated or truncated:
                break
        assert terminated and lives_lost == 2          # the third life's end is the game's end
        assert max(rewards) > 1 and total > 1          # raw points, not clipped
        final = obs.copy()
        np.testing.assert_array_equal(final[:3], prev[1:])   # the finished episode's s_{t+1}
        start, info = env.reset()
        assert info["lives"] == 3 and not np.array_equal(start, final)
        obs, r, terminated, truncated, info = env.step(0)
        assert not (terminated or truncated) and not info["life_lost"]
    finally:
        env.close()


def test_episodes_begin_with_random_no_op_starts():
    env = make_atari_env("ALE/Pong-v5")
    try:
        starts = {env.reset(seed=s)[1]["episode_frame_number"] for s in range(12)}
    finally:
        env.close()
    assert len(starts) >= 5 and min(starts) >= 0 and max(starts) <= 31


def test_fire_at_reset_launches_the_ball():
    """Breakout waits for FIRE: with FIRE at reset, an agent that only ever plays NOOP still
    sees the ball launched and misses it (a life is lost) within a few dozen steps."""
    env = make_atari_env("ALE/Breakout-v5")
    try:
        env.reset(seed=1)
        lost = [env.step(0)[4]["life_lost"] for _ in range(200)]
        assert any(lost)
    finally:
        env.close()


def test_truncation_returns_the_final_frame_to_bootstrap_from():
    """A time limit (here 200 frames = 50 agent steps) truncates: the truncating step returns the
    finished episode's s_{t+1} (the stack continues), and reset() then returns the new episode's s_0."""
    env = AtariEnv("ALE/Pong-v5", max_frames_per_episode=200)
    try:
        obs, _ = env.reset(seed=5)
        for t in range(1, 1000):
            prev = obs.copy()
            obs, r, terminated, truncated, info = env.step(t % 6)
            np.testing.assert_array_equal(obs[:3], prev[1:])
            if terminated or truncated:
                break
        assert truncated and not terminated and t <= 50
        start, _ = env.reset()
        assert not np.array_equal(start[:3], obs[1:])
        obs2, *_ = env.step(0)
        np.testing.assert_array_equal(obs2[:3], start[1:])
    finally:
        env.close()


# ----------------------------------------------------------------------------- the worker loop
class _Spy:
    """Wraps a worker's environment: records what the learner had done before each step."""

    def __init__(self, env, learner):
        self.env, self.L = env, learner
        self.calls = []          # (TI_N, episodes) seen at each step call
        self.steps = []          # (raw reward, life_lost, episode over)
        self.resets = 0

    def step(self, a):
        self.calls.append((int(self.L.thread_i[TI_N]), int(self.L.thread_i[TI_EPISODES])))
        obs, r, term, trunc, info = self.env.step(a)
        self.steps.append((r, info["life_lost"], term or trunc))
        return obs, r, term, trunc, info

    def reset(self, **kw):
        self.resets += 1
        return self.env.reset(**kw)

    def close(self):
        self.env.close()


def test_worker_loop_life_loss_is_terminal_for_learning_only():
    """Through Workers._run_python: a lost life ends the segment (TI_N back to 0) without a reset
    or a logged episode; the game's end logs ONE episode whose return is the raw score summed over
    all lives and whose length counts every step; the learner itself saw rewards clipped to 1."""
    config = TrainConfig(algo="a3c", env="ALE/SpaceInvaders-v5", threads=1, steps=1_500, network="atari",
                         reward_clip=1.0, seed=2)
    info = describe_env(config.env)
    network = Network(network_spec(config, info))
    compile_kernels(config, network, info)
    shared = new_shared_state(config, network)
    workers = Workers(shared, network, info, config)
    workers.reset_environments()
    L = workers.learners[0]
    spy = _Spy(workers._envs[0], L)
    workers._envs[0] = spy
    clipped_seen = []
    original_step = spy.step

    def step(a):
        clipped_seen.append(float(np.max(np.abs(L.rewards))))
        return original_step(a)

    spy.step = step
    workers.start()
    assert workers.join(timeout=300)
    workers.close()
    assert not workers.errors
    assert max(clipped_seen) <= 1.0
    over = [i for i, s in enumerate(spy.steps) if s[2]]
    lost = [i for i, s in enumerate(spy.steps) if s[1]]
    assert lost, "no life was lost in 1,500 random Space Invaders steps"
    for i in lost:
        if i + 1 < len(spy.calls):
            assert spy.calls[i + 1][0] == 0                     # segment ended at the life loss
            assert spy.calls[i + 1][1] == spy.calls[i][1]       # ... but no episode was logged
    assert spy.resets == len(over) == int(L.thread_i[TI_EPISODES]) >= 1
    first = over[0]
    raw_return = sum(s[0] for s in spy.steps[: first + 1])
    T, ret, length = shared.episode_log[0, 0]
    assert ret == raw_return and raw_return > 1.0
    assert length == first + 1


def test_restarting_environments_drops_the_unfinished_episode():
    """On resume the emulator cannot continue the checkpoint's episode: its partial return and
    length are dropped so they do not inflate the first episode logged after the resume."""
    config = TrainConfig(algo="sarsa", env="ALE/Pong-v5", threads=2, network="atari", seed=1)
    info = describe_env(config.env)
    network = Network(network_spec(config, info))
    shared = new_shared_state(config, network)
    shared.thread_i[:, TI_EPISODE_STEPS] = 123
    shared.thread_f[:, TF_EPISODE_RETURN] = -7.0
    shared.thread_i[:, TI_PENDING_ACTION] = 2
    workers = Workers(shared, network, info, config)
    workers.reset_environments(fresh=False)
    workers.close()
    assert np.all(shared.thread_i[:, TI_EPISODE_STEPS] == 0) and np.all(shared.thread_f[:, TF_EPISODE_RETURN] == 0)
    assert np.all(shared.thread_i[:, TI_PENDING_ACTION] == -1)
    assert np.all(shared.obs[:, 0].max(axis=1) > 0)               # each thread holds a first frame


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("algo", ["a3c", "nstep-q", "onestep-q", "sarsa"])
def test_every_method_trains_on_pong(algo):
    config = resolve({"env": "ALE/Pong-v5", "algo": algo, "threads": 2, "steps": 150, "eval_every": 0,
                      "save_every": 0, "target_interval": 50, "eps_anneal_steps": 100})
    trainer = Trainer(config, final_eval=False)
    theta0 = trainer.shared.theta.copy()
    result = trainer.run()
    assert result.status == "finished", result.error
    assert result.steps >= 150
    theta = trainer.shared.theta
    assert np.all(np.isfinite(theta)) and not np.array_equal(theta, theta0)


def test_one_thread_fixed_seed_run_is_deterministic():
    def train():
        config = resolve({"env": "ALE/Breakout-v5", "algo": "a3c", "threads": 1, "steps": 120, "eval_every": 0,
                          "save_every": 0, "seed": 4})
        trainer = Trainer(config, final_eval=False)
        assert trainer.run().status == "finished"
        return trainer.shared.theta.copy()

    np.testing.assert_array_equal(train(), train())


def test_bench_atari_reports_every_piece():
    """``asyncrl bench atari`` at a tiny size: every measurement is present and sane (no timing asserted)."""
    import json

    from click.testing import CliRunner

    from numba_a3c.benchmarks.atari import PIECES
    from numba_a3c.benchmarks.report import cores
    from numba_a3c.cli.bench_atari import atari

    args = ["--threads", "1,2", "--seconds", "1", "--warmup", "0.5", "--emulator-seconds", "0.5",
            "--breakdown-steps", "20"]
    result = CliRunner().invoke(atari, args)
    assert result.exit_code == 0, result.output
    assert "emulator scaling, 2 threads vs 1" in result.output and "if the threads had" in result.output
    assert "× the emulator alone with 1," in result.output and "× the emulator alone with 2," in result.output
    assert "GIL held" in result.output          # probed with 1 thread (fewer threads than the 2+ cores)
    assert "GIL probe check: a thread holding the GIL" in result.output   # the probe against a known share
    result = CliRunner().invoke(atari, [*args, "--json"])  # click >= 8.2 keeps stdout and stderr apart
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data["breakdown_ms"]) == set(PIECES) and data["breakdown_steps"] >= 20
    assert all(v >= 0 for v in data["breakdown_cpu_ms"].values())
    for kind in ("vector", "ale"):
        assert all(rate > 0 for rate in data["emulator"][kind].values())
    assert set(data["training"]) == {"1", "2"} and all(rate > 0 for rate in data["training"].values())
    assert all(0 < mb < 100_000 for mb in data["memory_mb"].values())
    # probed only with fewer threads than cores (the probe needs a core of its own)
    assert set(data["gil_share"]) == {str(n) for n in (1, 2) if n < cores()}
    assert all(0 <= g <= 1 for g in data["gil_share"].values())
    assert set(data["gil_check"]) == {"500", "50"}            # long holds and short ones
    assert all(0 < c["true"] < 1 and 0 <= c["probe"] <= 1 for c in data["gil_check"].values())
    for n, ratio in data["training_vs_emulator"].items():   # the distance to the emulator's floor
        assert ratio == pytest.approx(data["training"][n] / data["emulator"]["vector"][n])


def test_bench_atari_rejects_bad_input():
    from click.testing import CliRunner

    from numba_a3c.cli.bench_atari import atari

    for args, message in ([["--env", "ALE/Pongg-v5"], "Did you mean ALE/Pong-v5"],
                          [["--threads", "0"], "thread counts >= 1"]):
        result = CliRunner().invoke(atari, args)
        assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("sticky", [0.0, 0.25])
def test_the_colour_twin_plays_the_same_game_and_renders_the_screen(sticky):
    """``colour=True`` (recordings) runs a twin emulator for the colour screen: same seed, same actions, so
    the same rewards, episode ends and picture as the preprocessed game, across an auto-reset; with sticky
    actions too (the twin's emulator draws the same repeats from the same seed)."""
    plain = AtariEnv("ALE/Pong-v5", seed=3, max_frames_per_episode=400, repeat_action_probability=sticky)
    colour = AtariEnv("ALE/Pong-v5", seed=3, max_frames_per_episode=400, colour=True,
                      repeat_action_probability=sticky)
    rng = np.random.default_rng(0)
    rows, cols = (np.arange(84) * 210 / 84 + 1.25).astype(int), (np.arange(84) * 160 / 84 + 0.95).astype(int)
    try:
        a, _ = plain.reset()
        b, _ = colour.reset()
        ends = 0
        for t in range(250):
            assert np.array_equal(a, b), t
            screen = colour.render()
            assert screen.shape == (210, 160, 3) and screen.dtype == np.uint8
            grey = screen @ np.array([0.299, 0.587, 0.114])
            small = grey[rows][:, cols]         # nearest-neighbour 84×84 of the screen: the agent's view
            assert np.corrcoef(small.ravel(), b[-1].ravel().astype(float))[0, 1] > 0.9, t
            action = int(rng.integers(plain.n_actions))
            a, ra, ta, ua, _ = plain.step(action)
            b, rb, tb, ub, _ = colour.step(action)
            assert (ra, ta, ua) == (rb, tb, ub), t
            if ta or ua:
                ends += 1
                a, _ = plain.reset()
                b, _ = colour.reset()
        assert ends == 2        # 400 frames = 100 steps an episode
        assert len({tuple(c) for c in colour.render().reshape(-1, 3)}) >= 3      # colours, not greys
    finally:
        plain.close()
        colour.close()


def test_atari_recordings_are_colour_frames_at_the_games_pace(tmp_path):
    from numba_a3c.evaluate import evaluate
    from numba_a3c.inspection import recording_fps, write_gif
    from numba_a3c.nn.network import atari_spec

    info = describe_env("ALE/Pong-v5")
    network = Network(atari_spec(info.n_actions, "actor_critic"))
    params = np.random.default_rng(0).uniform(-0.01, 0.01, network.n_params).astype(np.float32)
    frames = []
    evaluate(network, params, info, episodes=1, max_steps=30, on_frame=lambda f: frames.append(np.array(f)))
    assert len(frames) == 31 and frames[0].shape == (210, 160, 3)
    assert recording_fps("ALE/Pong-v5") == 15 and recording_fps("CartPole-v1") == 30
    Image = pytest.importorskip("PIL.Image", reason="GIFs need the 'record' extra (pillow)")
    path = write_gif(frames, tmp_path / "pong.gif", fps=recording_fps("ALE/Pong-v5"))
    total = 0
    with Image.open(path) as gif:      # pillow merges identical frames, adding up their durations
        for i in range(gif.n_frames):
            gif.seek(i)
            total += gif.info["duration"]
    assert abs(total - 31 * 1000 / 15) <= 31 * 5       # 31 agent steps at 15 a second: about 2.07 s
