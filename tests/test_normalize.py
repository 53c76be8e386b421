"""Observation normalisation and reward scaling (numba_a3c/normalize.py): the running statistics by
hand, determinism, the checkpoint's /normalizer, evaluation and the readers, and resume."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from numba_a3c import checkpoint
from numba_a3c.config import TrainConfig, resolve
from numba_a3c.normalize import (
    EPSILON,
    NC_GAMMA,
    OBS_CLIP,
    REWARD_CLIP,
    S_OBS_COUNT,
    S_RET_COUNT,
    S_RET_MEAN,
    S_RET_VAR,
    S_SIZE,
    FrozenObservations,
    Normalizer,
    new_arrays,
    normalize_observation,
    scale_reward,
)
from numba_a3c.trainer import Trainer

DOC = Path(__file__).resolve().parents[1] / "docs" / "checkpoint-format.md"

# Native CartPole with both normalisations on, one thread: fast and deterministic.
NORMALIZED = dict(algo="a3c", env="CartPole-v1", network="mlp", hidden=(32,), activation="tanh", threads=1,
                  steps=12_000, seed=3, lr=0.003, rms_eps=0.1, clip_norm=40.0, eval_every=0, eval_episodes=2,
                  log_interval=3600.0, normalize_obs=True, normalize_reward=True)


class Spec:
    input_shape, input_encoding, input_scale = (2,), "", 1.0


def normalizer(obs=True, reward=True, gamma=0.5):
    stats, cfg, ret = new_arrays(TrainConfig(normalize_obs=obs, normalize_reward=reward, gamma=gamma), Spec, 1)
    return Normalizer(stats, cfg, ret[0])


# ----------------------------------------------------------------------------- the statistics by hand
def test_running_mean_and_variance_by_hand():
    N = normalizer()
    x = np.array([1.0, 10.0], np.float32)
    normalize_observation(N, x)                  # n = 1: μ = x, σ² = 0, so x̂ = 0
    np.testing.assert_array_equal(x, [0.0, 0.0])
    np.testing.assert_array_equal(N.stats[S_SIZE:], [1.0, 10.0, 0.0, 0.0])
    x = np.array([3.0, 20.0], np.float32)
    normalize_observation(N, x)                  # n = 2: μ = (2, 15), σ² = (1, 25): x̂ = (1/1, 5/5)
    np.testing.assert_array_equal(N.stats[S_SIZE:], [2.0, 15.0, 1.0, 25.0])
    np.testing.assert_allclose(x, [1.0 / np.sqrt(1.0 + EPSILON), 5.0 / np.sqrt(25.0 + EPSILON)], rtol=1e-7)
    seen = np.array([[1.0, 10.0], [3.0, 20.0], [100.0, 15.0], [-7.0, 14.5]])
    for row in seen[2:]:
        normalize_observation(N, row.astype(np.float32))
    assert N.stats[S_OBS_COUNT] == 4
    np.testing.assert_allclose(N.stats[S_SIZE:S_SIZE + 2], seen.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(N.stats[S_SIZE + 2:], seen.var(axis=0), rtol=1e-12)   # population variance
    # An outlier updates the statistics before it is normalised: with n = 5 it lies √(n − 1) = 2
    # standard deviations out. With the statistics frozen, the normalised value is clipped to ±5.
    far = np.array([1e6, -1e6], np.float32)
    normalize_observation(N, far)
    np.testing.assert_allclose(far, [2.0, -2.0], rtol=1e-5)
    far = FrozenObservations(np.zeros(2), np.ones(2)).apply(np.array([1e6, -1e6], np.float32))
    np.testing.assert_array_equal(far, [OBS_CLIP, -OBS_CLIP])


def test_reward_scaling_by_hand():
    N = normalizer(obs=False, gamma=0.5)
    assert N.config[NC_GAMMA] == 0.5
    # R = 1: σ_R² = 0, r / √ε is clipped to 10.
    assert scale_reward(N, 1.0, False) == REWARD_CLIP
    # R = 1.5: returns {1, 1.5}, σ_R² = 0.0625, r̂ = 1 / 0.25.
    assert scale_reward(N, 1.0, False) == pytest.approx(4.0, rel=1e-7)
    # R = 1.75, the episode's last step: σ_R² = var{1, 1.5, 1.75}; R restarts from 0.
    r = scale_reward(N, 1.0, True)
    assert r == pytest.approx(1.0 / np.sqrt(np.var([1.0, 1.5, 1.75]) + EPSILON), rel=1e-9)
    assert N.ret[0] == 0.0
    assert N.stats[S_RET_COUNT] == 3 and N.stats[S_RET_MEAN] == pytest.approx(np.mean([1.0, 1.5, 1.75]))
    scale_reward(N, -2.0, False)                 # a new episode: R = −2
    assert N.ret[0] == -2.0
    assert N.stats[S_RET_VAR] == pytest.approx(np.var([1.0, 1.5, 1.75, -2.0]))
    # Off: the reward as it is, and nothing recorded.
    off = normalizer(obs=False, reward=False)
    assert scale_reward(off, 123.0, False) == 123.0 and off.stats[S_RET_COUNT] == 0


def test_only_vector_observations_are_normalised():
    class Image:
        input_shape, input_encoding, input_scale = (1, 10, 5), "", 1.0

    class OneHot:
        input_shape, input_encoding, input_scale = (16,), "one-hot", 1.0

    for spec in (Image, OneHot):
        stats, cfg, _ = new_arrays(TrainConfig(normalize_obs=True), spec, 1)
        assert cfg[0] == 0.0 and stats.shape == (S_SIZE,)


def test_which_presets_normalise():
    """The generic preset normalises observations; Pendulum-v1's both observations and rewards
    (it learns with them, not without: README "Continuous control"); CartPoleNoVel-v1's A3C
    observations (README "A3C-LSTM on CartPoleNoVel-v1"); the other presets neither."""
    generic = resolve(dict(env="MountainCar-v0", algo="a3c"))
    assert generic.preset == "default" and generic.normalize_obs and not generic.normalize_reward
    pendulum = resolve(dict(env="Pendulum-v1", algo="a3c"))
    assert pendulum.preset == "Pendulum-v1" and pendulum.normalize_obs and pendulum.normalize_reward
    assert not resolve(dict(env="Pendulum-v1", algo="a3c", normalize_reward=False)).normalize_reward
    novel = resolve(dict(env="CartPoleNoVel-v1", algo="a3c"))
    assert novel.normalize_obs and not novel.normalize_reward
    assert not resolve(dict(env="CartPoleNoVel-v1", algo="sarsa")).normalize_obs   # A3C's values only
    for env in ("CartPole-v1", "Acrobot-v1", "Catch-v0", "ALE/Pong-v5"):
        c = resolve(dict(env=env, algo="a3c"))
        assert not c.normalize_obs and not c.normalize_reward and not c.normalize_value, env


def test_the_generic_preset_normalises_a3c_values_scale_free():
    """The generic preset's A3C learns values and advantages in the returns' own units, with RMSProp
    ε 1e-5 (README, "Value normalisation"); the Q methods keep the paper's loss and ε."""
    a3c = resolve(dict(env="MountainCar-v0", algo="a3c"))
    assert a3c.normalize_value and a3c.normalize_advantage and a3c.rms_eps == 1e-5 and a3c.value_weight == 1.0
    q = resolve(dict(env="MountainCar-v0", algo="nstep-q"))
    assert not q.normalize_value and q.rms_eps == 0.1
    nodes = resolve(dict(env="MountainCar-v0", algo="a3c", nodes=2))      # yields to --nodes, as normalize_obs
    assert not nodes.normalize_value and not nodes.normalize_advantage


# ----------------------------------------------------------------------------- whole runs
def test_one_thread_run_with_normalisation_is_deterministic():
    cfg = TrainConfig(**NORMALIZED)
    first, second = Trainer(cfg, final_eval=False), Trainer(cfg, final_eval=False)
    first.run()
    second.run()
    np.testing.assert_array_equal(first.shared.theta, second.shared.theta)
    np.testing.assert_array_equal(first.shared.norm_stats, second.shared.norm_stats)
    np.testing.assert_array_equal(first.shared.norm_ret, second.shared.norm_ret)
    assert [r[:4] for r in first.episode_rows] == [r[:4] for r in second.episode_rows]
    s = first.shared.norm_stats
    assert s[S_OBS_COUNT] > 12_000 and s[S_RET_COUNT] == 12_000 and (s[S_SIZE + 4:] > 0).all()
    # The logged returns are CartPole's raw scores (integers), not scaled rewards.
    assert all(float(r[2]).is_integer() and r[2] >= 8 for r in first.episode_rows)
    # Without normalisation the same seed takes another path.
    plain = Trainer(TrainConfig(**{**NORMALIZED, "normalize_obs": False, "normalize_reward": False}),
                    final_eval=False)
    plain.run()
    assert not np.array_equal(plain.shared.theta, first.shared.theta)


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("normalized")
    trainer = Trainer(TrainConfig(**NORMALIZED), run_dir=run_dir, final_eval=True)
    assert trainer.run().status == "finished"
    return trainer, run_dir / "latest.h5"


def test_checkpoint_round_trip(normalized_run):
    trainer, path = normalized_run
    ck = checkpoint.load(path)
    np.testing.assert_array_equal(ck.norm_stats, trainer.shared.norm_stats)
    np.testing.assert_array_equal(ck.norm_config, trainer.shared.norm_config)
    np.testing.assert_array_equal(ck.norm_ret, trainer.shared.norm_ret)
    with h5py.File(path, "r") as f:      # readable names, as docs/checkpoint-format.md describes them
        g = f["normalizer"]
        assert bool(g.attrs["observations"]) and bool(g.attrs["rewards"]) and g.attrs["obs_clip"] == OBS_CLIP
        np.testing.assert_array_equal(g["obs_mean"][()], trainer.shared.norm_stats[S_SIZE:S_SIZE + 4])
        np.testing.assert_array_equal(g["obs_var"][()], trainer.shared.norm_stats[S_SIZE + 4:])
        assert g.attrs["return_var"] == trainer.shared.norm_stats[S_RET_VAR]
        for name in ("observations", "rewards", "obs_clip", "reward_clip", "epsilon", "gamma", "obs_count",
                     "return_count", "return_mean", "return_var", "obs_mean", "obs_var", "thread_return"):
            assert f"`{name}`" in DOC.read_text(encoding="utf-8"), name


def test_a_run_without_normalisation_writes_no_normalizer(tmp_path):
    cfg = TrainConfig(**{**NORMALIZED, "normalize_obs": False, "normalize_reward": False, "steps": 2000})
    Trainer(cfg, run_dir=tmp_path, final_eval=False).run()
    with h5py.File(tmp_path / "latest.h5", "r") as f:
        assert "normalizer" not in f
    assert checkpoint.load(tmp_path / "latest.h5").frozen_observations() is None


def _doc_reader():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    namespace = {"__name__": "numpy_policy"}
    exec(compile([b for b in blocks if "numpy_policy.py" in b][0], "numpy_policy.py", "exec"), namespace)
    return namespace


def test_eval_agent_and_reader_apply_the_statistics(normalized_run):
    """A checkpoint with non-trivial statistics: Agent.act, the package's evaluation policy and the
    documented NumPy reader all pick the action of the trainer's forward pass on x̂."""
    import numba_a3c
    from numba_a3c.nn.network import Network

    trainer, path = normalized_run
    ck = checkpoint.load(path)
    frozen = ck.frozen_observations()
    mean, std = frozen.stats[S_SIZE:S_SIZE + 4], np.sqrt(frozen.stats[S_SIZE + 4:])
    assert np.abs(mean).max() > 1e-3 and np.abs(std - 1.0).max() > 0.05     # not the identity
    net = Network(ck.spec)
    agent = numba_a3c.load(path)
    reader = _doc_reader()
    layers, shape, scale = reader["load_layers"](path)
    norm = reader["load_normalizer"](path)
    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(200):
        x = (mean + std * rng.normal(size=4) * 2.0).astype(np.float32)
        trainer_x = FrozenObservations.from_stats(trainer.shared.norm_stats, trainer.shared.norm_config).apply(x.copy())
        logits, _ = net.forward(ck.theta, trainer_x[None])
        expected = int(np.argmax(logits[0]))
        assert agent.act(x) == expected
        assert agent.predict(x)[0] == expected
        outputs = reader["forward"](layers, shape, scale, reader["normalize"](x, norm))
        np.testing.assert_allclose(outputs["pi"], logits[0], rtol=1e-4, atol=1e-5)
        assert reader["act"](outputs)[0] == expected
        raw_logits, _ = net.forward(ck.theta, x[None])
        differ += int(np.argmax(raw_logits[0])) != expected
    assert differ > 0, "the statistics changed no action: the test would not see them ignored"
    # asyncrl eval's path (inspection.evaluate_checkpoint) plays the policy with the statistics.
    from numba_a3c.evaluate import evaluate
    from numba_a3c.inspection import evaluate_checkpoint

    returns, lengths, _ = evaluate_checkpoint(ck, episodes=3, seed=4)
    expected = evaluate(net, ck.theta, trainer.env_info, episodes=3, seed=4, observations=frozen)
    np.testing.assert_array_equal(returns, expected[0])
    np.testing.assert_array_equal(lengths, expected[1])


def test_inspect_shows_the_statistics(normalized_run):
    from numba_a3c.inspection import format_summary, summarize

    _, path = normalized_run
    s = summarize(checkpoint.load(path), path)
    assert s["normalization"]["observations"]["count"] > 0 and len(s["normalization"]["observations"]["std"]) == 4
    text = format_summary(s)
    assert "observation normalisation (--normalize-obs)" in text and "reward scaling (--normalize-reward)" in text


def test_resume_restores_the_statistics_and_continues_exactly(tmp_path):
    cfg = TrainConfig(**NORMALIZED)
    whole = Trainer(cfg, final_eval=False)
    whole.run()
    first = Trainer(cfg, run_dir=tmp_path, final_eval=False)
    assert first.run(stop_at=5_000).status == "paused"
    saved = checkpoint.load(tmp_path / "latest.h5")
    second = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    np.testing.assert_array_equal(second.shared.norm_stats, saved.norm_stats)
    np.testing.assert_array_equal(second.shared.norm_ret, saved.norm_ret)
    second.run()
    np.testing.assert_array_equal(second.shared.theta, whole.shared.theta)
    np.testing.assert_array_equal(second.shared.norm_stats, whole.shared.norm_stats)
    assert [r[:4] for r in second.episode_rows] == [r[:4] for r in whole.episode_rows]


def test_gymnasium_run_normalises_through_the_python_loop():
    cfg = TrainConfig(**{**NORMALIZED, "gym": True, "steps": 3000})
    trainer = Trainer(cfg, final_eval=False)
    assert trainer.run().status == "finished"
    s = trainer.shared.norm_stats
    assert s[S_OBS_COUNT] >= 3000 and s[S_RET_COUNT] == 3000
    assert np.abs(trainer.shared.obs[0, 0]).max() <= OBS_CLIP


def test_nodes_refuse_normalisation_in_one_line():
    from numba_a3c.distributed import check_nodes
    from numba_a3c.validation import ConfigError

    with pytest.raises(ConfigError, match="--no-normalize-obs --no-normalize-reward$"):
        check_nodes(TrainConfig(nodes=2, normalize_obs=True))


def test_the_generic_presets_normalisation_yields_to_nodes():
    from numba_a3c.config import resolve

    # MountainCar-v0 has no preset of its own: the generic one normalises observations ...
    assert resolve(dict(env="MountainCar-v0")).normalize_obs
    # ... which one process's statistics cannot do across nodes, so --nodes turns the preset's choice off
    assert not resolve(dict(env="MountainCar-v0", nodes=2)).normalize_obs
    # while the user's own --normalize-obs stays, for validation to refuse in one line
    assert resolve(dict(env="MountainCar-v0", nodes=2, normalize_obs=True)).normalize_obs


# ----------------------------------------------------------------------------- --normalize-value
VALUE_NORMALIZED = {**NORMALIZED, "normalize_reward": False, "normalize_value": True}


def test_value_normalisation_is_saved_resumed_exactly_and_documented(tmp_path):
    """--normalize-value's statistics (V = σ v̂ + μ) travel in /value_scale: a paused run resumed from
    its checkpoint ends exactly where an uninterrupted one does."""
    from numba_a3c.normalize import value_moments

    cfg = TrainConfig(**VALUE_NORMALIZED)
    whole = Trainer(cfg, final_eval=False)
    whole.run()
    mean, std = value_moments(whole.shared.value_stats)
    assert whole.shared.value_stats[0] > 0 and mean > 1.0 and std > 1.0    # CartPole's returns: tens, spread
    first = Trainer(cfg, run_dir=tmp_path, final_eval=False)
    assert first.run(stop_at=5_000).status == "paused"
    saved = checkpoint.load(tmp_path / "latest.h5")
    np.testing.assert_array_equal(saved.value_stats, first.shared.value_stats)
    with h5py.File(tmp_path / "latest.h5", "r") as f:
        g = f["value_scale"]
        assert (g.attrs["mean"], g.attrs["std"]) == tuple(value_moments(first.shared.value_stats))
        for name in ("mean", "std", "count", "second_moment", "rate", "std_min"):
            assert name in g.attrs and f"`{name}`" in DOC.read_text(encoding="utf-8"), name
    second = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    np.testing.assert_array_equal(second.shared.value_stats, saved.value_stats)
    second.run()
    np.testing.assert_array_equal(second.shared.theta, whole.shared.theta)
    np.testing.assert_array_equal(second.shared.value_stats, whole.shared.value_stats)


def test_a_run_without_value_normalisation_keeps_no_statistics(tmp_path):
    cfg = TrainConfig(**{**VALUE_NORMALIZED, "normalize_value": False, "steps": 2000})
    trainer = Trainer(cfg, run_dir=tmp_path, final_eval=False)
    trainer.run()
    assert not trainer.shared.value_stats.any()
    with h5py.File(tmp_path / "latest.h5", "r") as f:
        assert "value_scale" not in f
    assert checkpoint.load(tmp_path / "latest.h5").value_stats is None


def test_health_reads_the_value_in_return_units(tmp_path):
    """inspect's health report turns v̂ back into V = σ v̂ + μ, so its value and returns compare."""
    from numba_a3c.diagnostics import checkpoint_health

    Trainer(TrainConfig(**{**VALUE_NORMALIZED, "steps": 20_000}), run_dir=tmp_path, final_eval=False).run()
    ckpt = checkpoint.load(tmp_path / "latest.h5")
    heads = checkpoint_health(ckpt, steps=200)["heads"]
    assert heads["value_mean"] > 5.0 and abs(heads["value_mean"] - heads["return_mean"]) < heads["return_mean"]
    from numba_a3c.inspection import format_summary, summarize

    text = format_summary(summarize(ckpt, tmp_path / "latest.h5"))
    assert "value normalisation (--normalize-value): returns of mean " in text


def test_nodes_refuse_value_normalisation_in_one_line():
    from numba_a3c.distributed import check_nodes
    from numba_a3c.validation import ConfigError

    with pytest.raises(ConfigError, match="--no-normalize-value$"):
        check_nodes(TrainConfig(nodes=2, normalize_value=True))
    check_nodes(TrainConfig(nodes=2, normalize_value=True, algo="nstep-q"))    # A3C's value only
