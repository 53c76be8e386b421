"""Workers of Python environments in processes of their own (numba_a3c.worker_processes, issue 14 part 4).

A run with worker processes must compute what the in-process run computes (one thread, the same
seed: the same θ), share θ and the exact global step through shared memory, carry Discrete
observations and script-registered ids into the children, end with one line when a child fails
or is killed, never hang, and leave nothing running after the command, Ctrl-C and a killed
trainer included. Signals and kills are real.
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

from numba_a3c.algorithms.state import C_T, TI_STEPS
from numba_a3c.build import build_run
from numba_a3c.config import resolve
from numba_a3c.envs.base import EnvError
from numba_a3c.envs.registry import describe_env
from numba_a3c.envs.subproc import want_processes
from numba_a3c.worker_processes import share_state
from numba_a3c.workers import new_shared_state

TESTS = Path(__file__).parent
pytestmark = pytest.mark.skipif(os.name != "posix", reason="environment processes need a POSIX system")


def _children_of(pid):
    """The pids of live worker processes started by process ``pid`` (their command line names it)."""
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


def test_the_workers_share_one_block_of_memory():
    """Every array of the run's state is a view of one shared block; a child that maps the block
    (as a worker process does) writes θ and the counters the parent reads."""
    parts = build_run(resolve(dict(env="CartPole-v1", gym=True, threads=2)))
    state = share_state(new_shared_state(parts.config, parts.network))
    assert state.memory is not None and state.theta.base is not None
    fresh = new_shared_state(parts.config, parts.network)
    np.testing.assert_array_equal(state.theta, fresh.theta)
    np.testing.assert_array_equal(state.thread_f, fresh.thread_f)
    block = state.memory
    code = (f"from numba_a3c.worker_processes import SharedBlock; "
            f"a = SharedBlock({block.fd}, {block.size}, {block.layout!r}).arrays(); "
            f"a['theta'][:3] = 42.0; a['counters'][{C_T}] = 12345; a['thread_i'][1, {TI_STEPS}] = 7")
    subprocess.run([sys.executable, "-c", code], pass_fds=(block.fd,), check=True, timeout=120)
    assert (state.theta[:3] == 42.0).all() and state.theta[3] == fresh.theta[3]
    assert state.counters[C_T] == 12345 and state.thread_i[1, TI_STEPS] == 7


def test_want_processes_default_and_refusals():
    gym = describe_env("CartPole-v1", force_gym=True)
    native = describe_env("CartPole-v1")
    # the default: processes for a gymnasium environment with 2 or more threads, nowhere else
    assert want_processes(None, gym, 2) and want_processes(None, gym, 16)
    assert not want_processes(None, gym, 1) and not want_processes(None, native, 2)
    assert not want_processes(False, gym, 2)
    assert want_processes(True, gym, 1) and want_processes(True, gym, 16)
    with pytest.raises(EnvError, match="native .* drop --env-processes"):
        want_processes(True, native, 2)
    callable_info = gym.__class__(**{**gym.__dict__, "maker": lambda: None})
    with pytest.raises(EnvError, match="cannot be pickled"):
        want_processes(True, callable_info, 2)
    assert not want_processes(None, callable_info, 2)    # by default: threads, without a word


def test_an_environment_defined_in_the_running_script_stays_in_threads():
    """A worker process's ``__main__`` is not the user's script, so an environment class or callable
    defined there cannot be made in one: by default the workers stay threads; asked for, one line."""
    import gymnasium
    from gymnasium.envs.classic_control import CartPoleEnv

    class ScriptCartPole(CartPoleEnv):
        pass

    ScriptCartPole.__module__ = "__main__"
    gymnasium.register(id="ScriptDefined/CartPole-v0", entry_point=ScriptCartPole, max_episode_steps=50)
    try:
        info = describe_env("ScriptDefined/CartPole-v0")
        assert info.kind == "gym" and not want_processes(None, info, 2)
        with pytest.raises(EnvError, match=r"entry point is defined in the script being run \(__main__\)"):
            want_processes(True, info, 2)
    finally:
        del gymnasium.registry["ScriptDefined/CartPole-v0"]


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


def test_worker_processes_count_exactly_and_carry_discrete_and_script_registered_envs(monkeypatch):
    """Two worker processes by default: both train, and the global step T, added to atomically from
    two processes, is exactly the sum of their own step counts. A Discrete observation (one-hot in
    the child too) and an id only this process registered (its EnvSpec travels) train the same way."""
    from numba_a3c.trainer import Trainer

    monkeypatch.syspath_prepend(str(TESTS))
    import robustness_envs  # noqa: F401 - registers Robust/Healthy-v0 in this process only

    for env in ("CartPole-v1", "FrozenLake-v1", "Robust/Healthy-v0"):
        config = resolve(dict(env=env, gym=env == "CartPole-v1", threads=2, steps=6000, eval_every=0, seed=1))
        trainer = Trainer(config, final_eval=False)
        assert trainer.shared.memory is not None, env
        result = trainer.run()
        assert result.status == "finished", (env, result.error)
        steps = trainer.shared.thread_i[:, TI_STEPS]
        assert (steps > 0).all() and result.steps == steps.sum() >= 6000, (env, steps, result.steps)


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


@pytest.mark.timeout(240)
def test_a_killed_trainer_leaves_no_worker_process(tmp_path):
    """SIGKILL to the trainer (no handler, no atexit): the kernel ends its worker processes
    (PR_SET_PDEATHSIG), and their sockets' EOF would too."""
    proc = _train(["--env", "CartPole-v1", "--gym", "--threads", "2", "--steps", "1000000000", "--eval-every", "0",
                   "--out", str(tmp_path / "run")])
    try:
        children = _training_children(proc, 2)
        proc.kill()
    finally:
        _finish(proc)
    deadline = time.monotonic() + 20
    while [c for c in children if Path(f"/proc/{c}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children_of(proc.pid)
