"""Python environments in processes of their own (numba_a3c.envs.subproc, issue 14 part 4).

A process environment must be the in-process one step for step (seeding, truncation, the reset the
worker does after an episode), its failures must end a run with one line and never hang it, and
nothing it started may outlive the command, Ctrl-C included. Signals and kills are real.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from numba_a3c.config import resolve
from numba_a3c.envs.base import EnvError
from numba_a3c.envs.registry import describe_env, make_python_env
from numba_a3c.envs.subproc import EnvProcessError, ProcessEnv, want_processes

TESTS = Path(__file__).parent
pytestmark = pytest.mark.skipif(os.name != "posix", reason="environment processes need a POSIX system")


def _children_of(pid):
    """The pids of live environment processes started by process ``pid`` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "child_main(" in cmd and f", {pid})" in cmd and "zombie" not in state:
            found.append(int(entry.name))
    return found


def _same_trajectory(info, seed, steps, rng_seed=0):
    """Step the in-process and the process environment side by side as a worker does (reset with
    the seed once, then reset() after every episode); assert every value is identical."""
    local = make_python_env(info, seed=seed)
    remote = ProcessEnv(info, seed=seed)
    rng = np.random.default_rng(rng_seed)
    episodes = truncations = 0
    try:
        a, b = local.reset(seed=seed), remote.reset(seed=seed)
        np.testing.assert_array_equal(a[0], b[0])
        for t in range(steps):
            action = int(rng.integers(info.n_actions))
            x, y = local.step(action), remote.step(action)
            np.testing.assert_array_equal(x[0], y[0], err_msg=f"observation at step {t}")
            assert x[1:4] == y[1:4], f"(reward, terminated, truncated) at step {t}: {x[1:4]} vs {y[1:4]}"
            if x[2] or x[3]:
                episodes += 1
                truncations += bool(x[3])
                a, b = local.reset(), remote.reset()
                np.testing.assert_array_equal(a[0], b[0], err_msg=f"reset after step {t}")
    finally:
        local.close()
        remote.close()
    return episodes, truncations


def test_process_env_is_the_in_process_env_step_for_step():
    info = describe_env("CartPole-v1", force_gym=True, env_kwargs=("max_episode_steps=30",))
    episodes, truncations = _same_trajectory(info, seed=7, steps=600)
    assert episodes >= 20 and truncations >= 1     # both ways an episode ends were compared


def test_process_env_one_hot_and_script_registered_ids(monkeypatch):
    """A Discrete observation (one-hot in the child too) and an id only the trainer's script
    registered (its EnvSpec travels to the child, with the trainer's sys.path)."""
    episodes, _ = _same_trajectory(describe_env("FrozenLake-v1"), seed=3, steps=300)
    assert episodes >= 5
    monkeypatch.syspath_prepend(str(TESTS))
    import robustness_envs  # noqa: F401 - registers Robust/Healthy-v0 in this process only
    episodes, truncations = _same_trajectory(describe_env("Robust/Healthy-v0"), seed=5, steps=100)
    assert truncations == episodes >= 4


def test_environment_exception_is_reported_not_hung():
    info = describe_env("CartPole-v1", force_gym=True)
    env = ProcessEnv(info, seed=0)
    try:
        env.reset(seed=0)
        with pytest.raises(EnvProcessError, match=r"raised in its environment process .* during step: .*Error"):
            env.step(7)                  # CartPole's step asserts the action is in its space
    finally:
        env.close()


@pytest.mark.timeout(60)
def test_killed_process_is_an_error_not_a_hang():
    info = describe_env("CartPole-v1", force_gym=True)
    env = ProcessEnv(info, seed=0)
    env.reset(seed=0)
    os.kill(env.pid, signal.SIGKILL)
    with pytest.raises(EnvProcessError, match=r"\(pid \d+\) was killed by SIGKILL during step; the run stops"):
        env.step(0)
    env.close()


def test_failure_to_make_the_environment_is_reported():
    info = describe_env("CartPole-v1", force_gym=True)
    bad = info.__class__(**{**info.__dict__, "env_id": "NoSuchEnv-v0"})
    env = ProcessEnv(bad, seed=0)
    try:
        with pytest.raises(EnvProcessError, match="NoSuchEnv-v0 raised in its environment process .* making it"):
            env.reset(seed=0)
    finally:
        env.close()


def test_close_ends_the_process_and_a_dead_parent_ends_its_children(tmp_path):
    info = describe_env("CartPole-v1", force_gym=True)
    env = ProcessEnv(info, seed=0)
    env.reset(seed=0)
    env.close()
    assert env._process.poll() is not None
    # A parent killed outright (no close, no atexit): its children must not stay.
    code = ("import os, signal, sys; from numba_a3c.envs.registry import describe_env; "
            "from numba_a3c.envs.subproc import ProcessEnv; "
            "envs = [ProcessEnv(describe_env('CartPole-v1', force_gym=True), seed=k) for k in range(2)]; "
            "[e.reset(seed=0) for e in envs]; print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    parent = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 20
    while _children_of(parent) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children_of(parent)


def test_want_processes_default_and_refusals():
    gym = describe_env("CartPole-v1", force_gym=True)
    native = describe_env("CartPole-v1")
    assert not want_processes(None, gym, 2) and not want_processes(None, native, 2)   # off unless asked for
    assert not want_processes(False, gym, 2)
    assert want_processes(True, gym, 1) and want_processes(True, gym, 16)
    with pytest.raises(EnvError, match="native .* drop --env-processes"):
        want_processes(True, native, 2)
    callable_info = gym.__class__(**{**gym.__dict__, "maker": lambda: None})
    with pytest.raises(EnvError, match="cannot be pickled"):
        want_processes(True, callable_info, 2)


def test_cli_refuses_env_processes_for_a_native_env():
    from click.testing import CliRunner

    from numba_a3c.cli.main import cli

    r = CliRunner().invoke(cli, ["train", "--env", "CartPole-v1", "--env-processes", "--steps", "100"])
    assert r.exit_code == 2
    assert "is a native (Numba) one" in r.output and "Traceback" not in r.output


def test_training_with_processes_is_the_in_process_training():
    """One thread, the same seed: the learned parameters are identical with and without processes."""
    from numba_a3c.trainer import Trainer

    thetas = []
    for processes in (False, True):
        config = resolve(dict(env="CartPole-v1", gym=True, threads=1, steps=3000, eval_every=0, seed=4,
                              env_processes=processes))
        trainer = Trainer(config, final_eval=False)
        result = trainer.run()
        assert result.status == "finished", result.error
        thetas.append(trainer.shared.theta.copy())
    np.testing.assert_array_equal(thetas[0], thetas[1])


def _train(args, **kw):
    """``asyncrl train ARGS`` in a subprocess, its output collected line by line in ``proc.lines``."""
    proc = subprocess.Popen([sys.executable, "-m", "numba_a3c.cli.main", "train", "--log-interval", "0.2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    proc.lines = []
    threading.Thread(target=lambda: proc.lines.extend(proc.stdout), daemon=True).start()
    return proc


def _training_children(proc, n, timeout=120):
    """Wait until the run prints progress (its workers are stepping); its ``n`` environment processes."""
    deadline = time.monotonic() + timeout
    while not any("steps/s" in line for line in proc.lines) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    children = _children_of(proc.pid)
    assert len(children) == n, f"expected {n} environment processes; output:\n{''.join(proc.lines)}"
    return children


def _finish(proc, timeout=90):
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    return "".join(proc.lines)


@pytest.mark.timeout(240)
def test_ctrl_c_leaves_nothing_running(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the run stops and saves, and no
    environment process outlives it."""
    proc = _train(["--env", "CartPole-v1", "--gym", "--env-processes", "--threads", "2", "--steps", "1000000000",
                   "--eval-every", "0", "--out", str(tmp_path / "run")], start_new_session=True)
    try:
        children = _training_children(proc, 2)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        out = _finish(proc)
    assert proc.returncode == 130, out
    assert "stopped:" in out
    assert (tmp_path / "run" / "latest.h5").exists()
    assert not _children_of(proc.pid)
    assert not [c for c in children if Path(f"/proc/{c}").exists()
                and "zombie" not in Path(f"/proc/{c}/status").read_text()]


@pytest.mark.timeout(240)
def test_killed_environment_process_stops_the_run_with_one_line(tmp_path):
    proc = _train(["--env", "CartPole-v1", "--gym", "--env-processes", "--threads", "2", "--steps", "1000000000",
                   "--eval-every", "0", "--out", str(tmp_path / "run")])
    try:
        children = _training_children(proc, 2)
        os.kill(children[0], signal.SIGKILL)
    finally:
        out = _finish(proc)
    assert proc.returncode != 0, out
    lines = [line for line in out.splitlines() if "was killed by SIGKILL" in line]
    assert len(lines) == 1 and lines[0].startswith("error: worker thread "), out
    assert "Traceback" not in out
    assert (tmp_path / "run" / "latest.h5").exists()
    assert not _children_of(proc.pid)
