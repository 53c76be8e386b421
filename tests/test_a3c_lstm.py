"""A3C with a recurrent network: each thread's (h, c) across segments, at episode starts, in
evaluation, in checkpoints and on resume.

The gradient of a recurrent segment is checked against finite differences in test_network_lstm.py;
here the worker's bookkeeping is: the state a segment starts from is the one the previous segment
ended in (kept in row 0 of the thread's workspace, what BPTT starts from), zero where an episode
starts, saved with a checkpoint taken at rest and restored by --resume.
"""

import json

import h5py
import numpy as np
import pytest

from numba_a3c import checkpoint
from numba_a3c.algorithms.learner import act, begin_segment, end_segment, observe
from numba_a3c.algorithms.state import C_T, OK, TI_EPISODE_OVER, TI_N
from numba_a3c.build import build_run
from numba_a3c.config import resolve
from numba_a3c.envs.native import ENV_STATE_SIZE, NativeEnv, env_reset, env_step
from numba_a3c.evaluate import Policy, evaluate, policy_state, run_episodes_native
from numba_a3c.rng import new_rng
from numba_a3c.trainer import Trainer
from numba_a3c.workers import Workers, make_learner, recurrent_states, reset_native


def lstm_config(**kw):
    values = dict(algo="a3c", env="CartPoleNoVel-v1", network="lstm", hidden=(8, 4), threads=1, steps=6_000,
                  t_max=5, seed=5, eval_every=0, eval_episodes=2, log_interval=60.0)
    values.update(kw)
    return resolve(values)


def test_worker_carries_the_state_between_segments_and_resets_it_at_episode_starts():
    parts = build_run(lstm_config())
    net = parts.network
    assert net.recurrent and net.state_size == 8
    shared = parts.initial_state()
    L = make_learner(shared, net, 0)
    env = parts.env_info.native_id
    reset_native(L, env)
    carried = resets = 0
    for _ in range(200):                               # segments
        begin_segment(L)
        start = net.get_state(L.ws[0]).copy()
        while True:
            n = L.thread_i[TI_N]
            a = act(L)
            r, term, trunc = env_step(env, L.env_state, a, L.env_rng, L.obs[n + 1])
            if observe(L, r, term, trunc, term or trunc):
                break
        n = L.thread_i[TI_N]
        after_last_step = net.get_state(L.ws[n]).copy()  # written by the forward pass of row n − 1
        assert not np.array_equal(after_last_step, start)
        episode_over = L.thread_i[TI_EPISODE_OVER] != 0
        assert end_segment(L) == OK
        state = net.get_state(L.ws[0])
        if episode_over:
            assert not state.any(), "a new episode must start from h = c = 0"
            env_reset(env, L.env_state, L.env_rng, L.obs[0])
            L.thread_i[TI_EPISODE_OVER] = 0
            resets += 1
        else:
            np.testing.assert_array_equal(state, after_last_step)
            carried += 1
    assert carried > 20 and resets > 5


def test_evaluation_carries_the_state_within_an_episode_and_resets_it_between():
    parts = build_run(lstm_config())
    net = parts.network
    theta = net.init_params(3) + np.random.default_rng(3).normal(scale=0.3, size=net.n_params).astype(np.float32)
    # The policy acting one observation at a time gives the logits of a whole-episode forward pass.
    policy = Policy(net, theta, "greedy")
    obs = np.random.default_rng(4).normal(size=(6, 2)).astype(np.float32)
    actions = [policy(o) for o in obs]
    logits, _ = net.forward(theta, obs)      # rows = consecutive steps from h = c = 0
    assert actions == [int(np.argmax(row)) for row in logits]
    assert net.get_state(policy.state.ws[0]).any()
    policy.reset()
    assert not net.get_state(policy.state.ws[0]).any()
    # Each evaluation episode starts from h = c = 0: the same as a fresh policy for every episode.
    cap = parts.env_info.max_episode_steps
    returns, lengths = np.zeros(3), np.zeros(3, np.int64)
    run_episodes_native(policy_state(net, theta, "greedy", 0.0, new_rng(0)), parts.env_info.native_id,
                        np.zeros(ENV_STATE_SIZE), new_rng(8), cap, returns, lengths)
    env_state, env_rng = np.zeros(ENV_STATE_SIZE), new_rng(8)
    for e in range(3):
        one_r, one_l = np.zeros(1), np.zeros(1, np.int64)
        run_episodes_native(policy_state(net, theta, "greedy", 0.0, new_rng(0)), parts.env_info.native_id,
                            env_state, env_rng, cap, one_r, one_l)
        assert one_l[0] == lengths[e]
    # and the same through the Python loop (a fresh Policy per episode against evaluate's one, reset)
    _, py_lengths = evaluate(net, theta, parts.env_info, episodes=3, seed=7, on_frame=lambda frame: None)
    for e in range(3):
        env = NativeEnv("CartPoleNoVel-v1", seed=7)
        o, _ = env.reset(seed=7 + e)
        fresh, steps, done = Policy(net, theta, "greedy"), 0, False
        while not done:
            o, _, term, trunc, _ = env.step(fresh(o))
            steps, done = steps + 1, term or trunc
        assert steps == py_lengths[e]


def test_fresh_environments_start_from_zero_states_and_resumed_ones_keep_theirs():
    parts = build_run(lstm_config(threads=2))
    shared = parts.initial_state()
    workers = Workers(shared, parts.network, parts.env_info, parts.config)
    shared.ws[:, 0] = 1.0
    workers.reset_environments(fresh=False)       # resume from a checkpoint taken at rest
    assert np.all(recurrent_states(shared, parts.network) == 1.0)
    workers.reset_environments(fresh=True)        # new episodes (a fresh run, a Hogwild snapshot)
    assert not recurrent_states(shared, parts.network).any()


def test_resume_restores_the_threads_states_and_equals_an_uninterrupted_run(tmp_path):
    whole = Trainer(lstm_config(), final_eval=False)
    whole.run()
    first = Trainer(lstm_config(), run_dir=tmp_path, final_eval=False)
    assert first.run(stop_at=2_500).status == "paused"
    ck = checkpoint.load(tmp_path / "latest.h5")
    assert ck.attrs["at_rest"]
    np.testing.assert_array_equal(ck.recurrent_state, recurrent_states(first.shared, first.network))
    assert ck.recurrent_state.any(), "the paused thread is inside an episode: its state is not zero"
    with h5py.File(tmp_path / "latest.h5", "r") as f:
        g = f["params/lstm1"]
        assert g.attrs["type"] == "lstm" and g.attrs["gate_order"] == "ifgo" and g.attrs["cells"] == 4
        assert g["W"].shape == (8, 16) and g["U"].shape == (4, 16) and g["b"].shape == (16,)
        assert [c.decode() if isinstance(c, bytes) else c
                for c in f["state/recurrent_state"].attrs["columns"]] == ["lstm1/h", "lstm1/c"]
    second = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    np.testing.assert_array_equal(recurrent_states(second.shared, second.network), ck.recurrent_state)
    second.run()
    assert second.shared.counters[C_T] == whole.shared.counters[C_T]
    np.testing.assert_array_equal(second.shared.theta, whole.shared.theta)
    np.testing.assert_array_equal(second.shared.opt_shared, whole.shared.opt_shared)


def test_resume_without_the_saved_states_would_differ(tmp_path):
    # The previous test can fail: zeroing the restored states changes the continued run.
    whole = Trainer(lstm_config(), final_eval=False)
    whole.run()
    first = Trainer(lstm_config(), run_dir=tmp_path, final_eval=False)
    first.run(stop_at=2_500)
    second = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    second.shared.ws[:, 0] = 0.0
    second.run()
    assert not np.array_equal(second.shared.theta, whole.shared.theta)


@pytest.mark.parametrize("algo", ["nstep-q", "onestep-q", "sarsa"])
def test_other_methods_refuse_a_recurrent_network(algo):
    from numba_a3c.validation import ConfigError, check_config

    with pytest.raises(ConfigError, match="only --algo a3c carries an LSTM state"):
        check_config(lstm_config(algo=algo))


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lstm_run")
    Trainer(lstm_config(steps=3_000), run_dir=run_dir, final_eval=False).run()
    return run_dir


def test_documented_numpy_reader_runs_a_recurrent_policy(lstm_run):
    """docs/checkpoint-format.md's h5py + NumPy program, carrying its state dict through an episode,
    gives the package's logits and greedy actions at every step."""
    from test_inspect_eval import doc_example

    namespace = {"__name__": "numpy_policy"}
    exec(compile(doc_example(), "numpy_policy.py", "exec"), namespace)
    layers, shape, scale = namespace["load_layers"](lstm_run / "latest.h5")
    assert [layer["type"] for layer in layers] == ["dense", "lstm", "dense", "dense"]
    ck = checkpoint.load(lstm_run / "latest.h5")
    net = build_run(ck.config).network
    policy = Policy(net, ck.theta, "greedy")
    for episode in range(2):
        env = NativeEnv("CartPoleNoVel-v1", seed=episode)
        obs, _ = env.reset(seed=episode)
        policy.reset()
        state, done, steps = {}, False, 0
        while not done and steps < 60:
            outputs = namespace["forward"](layers, shape, scale, obs, state)
            a = policy(obs)
            np.testing.assert_allclose(outputs["pi"], policy.state.ws[0, net.out_pi:net.out_pi + 2], rtol=1e-4,
                                       atol=1e-5)
            assert namespace["act"](outputs)[0] == a
            obs, _, term, trunc, _ = env.step(a)
            done, steps = term or trunc, steps + 1
        assert steps > 5 and state["lstm1"][0].any()


def test_eval_and_inspect_read_a_recurrent_checkpoint(lstm_run):
    from click.testing import CliRunner

    from numba_a3c.cli.main import cli

    result = CliRunner().invoke(cli, ["inspect", str(lstm_run / "latest.h5")])
    assert result.exit_code == 0, result.output
    assert "lstm 4 ifgo" in result.output and "lstm1/U" in result.output
    result = CliRunner().invoke(cli, ["eval", str(lstm_run / "latest.h5"), "--episodes", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["returns"]) == 3


def test_atari_lstm_preset_is_the_atari_preset_with_the_lstm_network_and_half_the_rate():
    lstm = resolve({"env": "ALE/Pong-v5", "preset": "atari-lstm"})
    ff = resolve({"env": "ALE/Pong-v5"})
    assert lstm.network == "atari-lstm" and ff.network == "atari"
    assert lstm.lr == ff.lr / 2          # the one measured difference (the preset's "about")
    assert lstm.replace(network="atari", preset="atari", lr=ff.lr) == ff


def test_cartpole_novel_preset_gives_a3c_the_lstm_and_the_q_methods_the_mlp():
    assert resolve({"env": "CartPoleNoVel-v1"}).network == "lstm"
    assert resolve({"env": "CartPoleNoVel-v1", "algo": "nstep-q"}).network == "mlp"
