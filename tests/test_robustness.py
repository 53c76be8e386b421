"""Bad input, faults, interruption and long runs (issue 6; the table in docs/robustness.md).

Signals are real: ``asyncrl train`` runs in a subprocess and gets SIGINT / SIGTERM. Worker
failures come from real misbehaving gymnasium environments (tests/robustness_envs.py), run
through the real CLI in a subprocess that imports them first.
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
from click.testing import CliRunner

from numba_a3c import checkpoint
from numba_a3c.algorithms.state import C_T, TI_STEPS
from numba_a3c.cli.main import cli
from numba_a3c.cli.train import StopSignals
from numba_a3c.config import resolve
from numba_a3c.trainer import STOP_TIMEOUT, Trainer

TESTS = Path(__file__).parent
ROOT = TESTS.parent
# The CLI, with the misbehaving environments of robustness_envs.py registered.
CLI = [sys.executable, "-c", "import robustness_envs; from numba_a3c.cli.main import main; main()"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args, cwd, timeout=120):
    return subprocess.run(CLI + ["train"] + args, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


class Running:
    """``asyncrl train`` in a subprocess whose output lines are collected as they come; with
    ``new_session`` it leads its own process group (as under GNU timeout), which a test can signal."""

    def __init__(self, args, cwd, new_session=False):
        self.proc = subprocess.Popen(CLI + ["train"] + args, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for(self, text, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return
            if self.proc.poll() is not None:
                time.sleep(0.2)
                break
            time.sleep(0.05)
        if text not in self.output:
            self.kill()
            pytest.fail(f"never printed {text!r}; output:\n{self.output}")

    def signal_and_time(self, sig, timeout=15.0):
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        return self.wait_exit(timeout, f"of {sig!r}"), time.monotonic() - t0

    def wait_exit(self, timeout=30.0, after=""):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"did not exit within {timeout} s {after}; output:\n{self.output}")
        self._reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ============================================================================ 1. bad input
BAD_INPUTS = [
    (["--algo", "a3d"], "Did you mean a3c"),
    (["--optimizer", "rmsprob"], "Did you mean rmsprop"),
    (["--env", "CartPol-v1"], "Did you mean CartPole-v1"),
    (["--env", "NoSuchEnv-v9"], "unknown environment"),
    (["--algo", "onestep-q", "--env", "Pendulum-v1"], "cannot train on Pendulum-v1: its actions are continuous"),
    (["--algo", "sarsa", "--env", "MountainCarContinuous-v0"], "need discrete actions. Use --algo a3c"),
    (["--env", "CartPole-v1", "--network", "conv"], "--network conv cannot read"),
    (["--network", "atari"], "needs 4x84x84 frames"),
    (["--threads", "0"], "--threads 0: must be between 1 and 256"),
    (["--threads", "1000"], "--threads 1,000: must be between 1 and 256"),
    (["--steps", "0"], "--steps 0"),
    (["--steps", "-5"], "--steps -5"),
    (["--lr", "0"], "--lr 0: the learning rate must be in (0, 1]"),
    (["--lr", "5"], "--lr 5: the learning rate must be in (0, 1]"),
    (["--lr", "nan"], "--lr nan: must be a finite number"),
    (["--gamma", "0"], "--gamma 0: the discount factor must be in (0, 1]"),
    (["--gamma", "1.5"], "--gamma 1.5"),
    (["--t-max", "0"], "--t-max 0"),
    (["--t-max", "100000"], "--t-max 100,000"),
    (["--clip-norm", "-1"], "--clip-norm -1"),
    (["--beta", "-0.1"], "--beta -0.1"),
    (["--value-weight", "0"], "--value-weight 0: the value loss's weight must be > 0"),
    (["--value-weight", "inf"], "--value-weight inf: must be a finite number"),
    (["--value-rate", "0"], "--value-rate 0: the step size of --normalize-value's moving averages must be in (0, 1]"),
    (["--value-rate", "2"], "--value-rate 2: the step size"),
    (["--normalize-advantage"], "--normalize-advantage reads the advantage in --normalize-value's units: add "
                                "--normalize-value"),
    (["--rms-alpha", "1"], "--rms-alpha 1"),
    (["--rms-eps", "0"], "--rms-eps 0"),
    (["--eval-episodes", "0"], "--eval-episodes 0"),
    (["--eval-every", "-1"], "--eval-every -1"),
    (["--save-every", "-1"], "--save-every -1"),
    (["--target-interval", "0"], "--target-interval 0"),
    (["--reward-clip", "-1"], "--reward-clip -1"),
    (["--log-interval", "0"], "--log-interval 0"),
    (["--seed", "-1"], "--seed -1"),
    (["--hidden", "0"], "hidden sizes must be positive"),
    (["--hidden", "64,x"], "not a comma-separated list"),
    (["--hidden", "100000"], "--hidden 100,000"),
    (["--threads", "256", "--hidden", "60000,60000"], "more than this machine has"),
    (["--threads", "two"], "'two' is not a valid integer"),
    (["--resume", "no/such/run"], "no such file or run directory"),
    (["--stop-at", "0"], "0 is not in the range"),
    # options that do not go together: the whole message, with no "cannot read … observations" before it
    (["--algo", "nstep-q", "--network", "lstm"], "Error: --network lstm is recurrent and only --algo a3c"),
    (["--algo", "sarsa", "--network", "atari-lstm"], "Error: --network atari-lstm is recurrent and only --algo a3c"),
    (["--env", "Pendulum-v1", "--network", "lstm"], "Error: --network lstm with continuous actions (Pendulum-v1)"),
    (["--algo", "sarsa", "--separate-value"], "Error: --separate-value is for --algo a3c with --network mlp"),
    (["--network", "atari-lstm"], "the atari-lstm network needs 4x84x84 frames"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_anything_is_created(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # without --out the run would go to ./runs/...
    result = CliRunner().invoke(cli, ["train", "--quiet"] + args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert list(tmp_path.iterdir()) == [], "a refused run created files"


@pytest.mark.parametrize("args, message", [
    (["train", "--lr", "abc"],
     "Error: Invalid value for '--lr': 'abc' is not a valid float (see 'asyncrl train --help')"),
    (["train", "--nope"], "Error: No such option '--nope'"),
    (["trian"], "Error: No such command 'trian'. Did you mean 'train'? (see 'asyncrl --help')"),
    (["eval"], "Error: Missing argument 'PATH' (see 'asyncrl eval --help')"),
    (["bench", "atari", "--threads", "x"], "Error: Invalid value for '--threads'"),
])
def test_usage_errors_are_one_line_too(args, message):
    """click's own errors (a mistyped option, a value of the wrong type, a missing argument) are one
    line with exit status 2, like the package's, without click's usage lines above them."""
    result = CliRunner().invoke(cli, args, prog_name="asyncrl")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(message)


def test_output_directory_problems_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "old_run").mkdir()
    (tmp_path / "old_run" / "latest.h5").write_text("not really")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not_ckpt.h5").write_text("hello")
    cases = [
        (["--out", "a_file/run"], "a_file is a file, not a directory"),
        (["--out", "/proc/no_such_dir/run"], "no file can be created in /proc"),
        (["--out", "old_run"], "already exists and is not empty; use --force"),
        (["--resume", "empty"], "the directory has no latest.h5"),
        (["--resume", "not_ckpt.h5"], "is not an HDF5 file"),
    ]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for args, message in cases:
        result = CliRunner().invoke(cli, ["train", "--quiet", "--steps", "100"] + args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_existing_run_directory_needs_force_or_resume(tmp_path):
    out = tmp_path / "run"
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    first = CliRunner().invoke(cli, ["train", "--quiet", "--steps", "2000", "--threads", "1", "--out", str(out),
                                     "--eval-every", "0", "--eval-episodes", "1"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, ["train", "--quiet", "--steps", "2000", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    resumed = CliRunner().invoke(cli, ["train", "--quiet", "--resume", str(out), "--steps", "4000"])
    assert resumed.exit_code == 0, resumed.output
    assert "steps in" in resumed.output and "this invocation" in resumed.output and "the run so far" in resumed.output
    files = sorted(p.name for p in out.iterdir())
    for args, message in ((["--threads", "3"], "cannot resume with options that contradict the checkpoint"),
                          (["--steps", "10"], "is below the"),
                          (["--stop-at", "100"], "--stop-at 100 is not after the")):
        refused = CliRunner().invoke(cli, ["train", "--quiet", "--resume", str(out)] + args)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    assert sorted(p.name for p in out.iterdir()) == files
    forced = CliRunner().invoke(cli, ["train", "--quiet", "--steps", "2000", "--threads", "1", "--out", str(out),
                                      "--force", "--eval-every", "0", "--eval-episodes", "1"])
    assert forced.exit_code == 0, forced.output
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers, "train left its signal handlers behind"


# ============================================================================ 2. faults during a run
@pytest.mark.parametrize("where", ["--no-env-processes", "--env-processes"])
def test_worker_exception_stops_run_saves_and_names_the_thread(tmp_path, where):
    t0 = time.monotonic()
    r = run_cli(["--env", "Robust/FailingStep-v0", "--threads", "3", "--steps", "10000000", "--eval-every", "0",
                 "--out", "run", "--quiet", where], cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    # the same line either way; a worker process adds where it ran
    assert "worker thread 1 failed: RuntimeError: injected failure at step 2000 (at robustness_envs.py:" in r.stderr
    if where == "--env-processes":
        assert "(in its worker process, pid " in r.stderr, r.stderr
    assert "robustness_envs.py" in r.stderr and "in step" in r.stderr
    assert "Traceback" not in r.stderr
    assert "failed:" in r.stdout and "to continue: asyncrl train --resume" in r.stdout
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.global_step > 0 and np.isfinite(ck.theta).all()
    assert time.monotonic() - t0 < 60


def test_environment_that_cannot_start_fails_plainly(tmp_path):
    r = run_cli(["--env", "Robust/FailingReset-v0", "--threads", "2", "--steps", "10000", "--eval-every", "0",
                 "--out", "run", "--quiet", "--no-env-processes"], cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: 0 steps" in r.stdout
    assert ("error: could not start the environments: OSError: injected failure: the simulator could not start "
            "(at robustness_envs.py:") in r.stderr
    assert "Traceback" not in r.stderr


def test_nan_reward_is_divergence_and_last_good_checkpoint_is_kept(tmp_path):
    r = run_cli(["--env", "Robust/NaNReward-v0", "--threads", "2", "--steps", "10000000", "--eval-every", "0",
                 "--save-every", "500", "--out", "run", "--quiet"], cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "diverged" in r.stdout
    assert "training diverged at step" in r.stderr and "Try a lower learning rate (a new run with --lr" in r.stderr
    assert "the last good checkpoint" in r.stderr and "is kept" in r.stderr
    good = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert np.isfinite(good.theta).all()
    bad = checkpoint.load(tmp_path / "run" / "diverged.h5")
    assert bad.global_step >= good.global_step


def test_huge_learning_rate_diverges_with_advice(tmp_path):
    r = run_cli(["--algo", "nstep-q", "--lr", "1", "--clip-norm", "0", "--optimizer", "momentum",
                 "--steps", "3000000", "--threads", "2", "--out", "run", "--quiet"], cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "training diverged at step" in r.stderr and "--lr 0.33" in r.stderr
    assert (tmp_path / "run" / "diverged.h5").exists() and not (tmp_path / "run" / "latest.h5").exists()


def test_non_finite_parameters_are_caught_by_the_monitor(tmp_path):
    """A NaN in θ that no loss shows (e.g. behind a dead ReLU) still stops the run within a tick."""
    config = resolve(dict(threads=2, steps=10**9, eval_every=0, log_interval=0.05))
    holder = {}

    def corrupt(p):
        if "t" not in holder:
            holder["t"] = time.monotonic()
            trainer.shared.theta[3] = np.float32(np.inf)

    trainer = Trainer(config, on_progress=corrupt, final_eval=False, run_dir=tmp_path)
    result = trainer.run()
    assert result.status == "diverged"
    assert "parameters became NaN or Inf" in result.error and "lower learning rate" in result.error
    assert time.monotonic() - holder["t"] < 5.0
    assert (tmp_path / "diverged.h5").exists() and not (tmp_path / "latest.h5").exists()
    refused = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "diverged.h5")])
    assert refused.exit_code == 2 and "holds NaN or Inf parameters" in refused.output, refused.output


def test_checkpoint_that_cannot_be_written_stops_the_run(tmp_path):
    """A directory squatting on latest.h5 makes every save fail (as a full disk would): the run
    stops as failed and says so, instead of training on with nothing to resume from."""
    (tmp_path / "latest.h5").mkdir()
    config = resolve(dict(threads=2, steps=10**9, eval_every=0, save_every=2000))
    t0 = time.monotonic()
    result = Trainer(config, final_eval=False, run_dir=tmp_path).run()
    assert time.monotonic() - t0 < 60
    assert result.status == "failed"
    assert "could not save a checkpoint in" in result.error and "latest.h5" in result.error
    assert not list(tmp_path.glob(".*.tmp"))


def test_episode_log_overrun_is_counted_not_hidden():
    """If a thread finishes more episodes than its ring buffer holds between two drains (the
    monitor was held up), the missing episodes are counted and reported, never invented."""
    from numba_a3c.algorithms.state import EPISODE_LOG_CAPACITY, TI_EPISODES

    trainer = Trainer(resolve(dict(threads=2, steps=1000, eval_every=0)), final_eval=False)
    log = trainer.shared.episode_log
    done = EPISODE_LOG_CAPACITY + 904
    for i in range(done):
        log[0, i % EPISODE_LOG_CAPACITY] = (i + 1, float(i), 1.0)
    trainer.shared.thread_i[0, TI_EPISODES] = done
    trainer.drain_episodes(0.0)
    assert trainer.episodes_dropped == 904
    assert len(trainer.episode_rows) == EPISODE_LOG_CAPACITY
    assert trainer.episode_rows[0][:3] == (905, 0, 904.0) and trainer.episode_rows[-1][2] == done - 1


def test_episode_rows_read_like_a_list_of_tuples():
    from numba_a3c.trainer import EpisodeRows

    expected = [(10 * i, i % 3, 0.5 * i, i + 1, 0.25 * i) for i in range(3000)]  # grows past 1024 twice
    rows = EpisodeRows()
    for r in expected[:2000]:
        rows.append(r)
    rows.extend(np.asarray(expected[2000:], np.float64))
    assert len(rows) == 3000 and list(rows) == expected
    assert rows[5] == expected[5] and rows[-1] == expected[-1] and rows[-100:] == expected[-100:]
    assert np.array_equal(np.asarray(rows), np.asarray(expected, np.float64))
    assert list(EpisodeRows(rows.array())) == expected


def test_failing_periodic_evaluation_stops_the_run(tmp_path):
    """The evaluation thread's environment raises (its seed makes it the faulty one; the single
    training thread's is not): the run stops as failed instead of losing the error."""
    import robustness_envs  # noqa: F401 - registers Robust/FailingStep-v0

    config = resolve(dict(env="Robust/FailingStep-v0", threads=1, seed=82, steps=10**8, eval_every=1000,
                          eval_episodes=200))
    trainer = Trainer(config, final_eval=False, run_dir=tmp_path)
    result = trainer.run()
    assert result.status == "failed"
    assert "the periodic evaluation failed: RuntimeError: injected failure" in result.error
    assert np.isfinite(checkpoint.load(tmp_path / "latest.h5").theta).all()


def test_stop_during_a_blocked_final_evaluation_returns_promptly(tmp_path):
    """The final evaluation's environment blocks forever (its seed makes it the faulty one); a
    stop request abandons the evaluation and the run still saves."""
    import robustness_envs  # noqa: F401 - registers Robust/BlockingStep-v0

    budget = 3000
    config = resolve(dict(env="Robust/BlockingStep-v0", threads=1, seed=82, steps=budget, eval_every=0,
                          eval_episodes=200))
    trainer = Trainer(config, run_dir=tmp_path)
    asked = {}

    def stop_once_evaluating():
        while int(trainer.shared.counters[C_T]) < budget or trainer.clock.t0 is not None:
            time.sleep(0.05)
        time.sleep(0.5)
        asked["t"] = time.monotonic()
        trainer.request_stop()

    threading.Thread(target=stop_once_evaluating, daemon=True).start()
    result = trainer.run()
    assert time.monotonic() - asked["t"] < 2.0
    assert result.final_eval is None and result.steps >= budget
    assert checkpoint.load(tmp_path / "latest.h5").global_step == result.steps


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_stops_saves_and_prints_resume(tmp_path, sig, code):
    run = Running(["--steps", "1000000000", "--threads", "4", "--log-interval", "0.2", "--eval-every", "0",
                   "--out", "run"], cwd=tmp_path)
    run.wait_for("steps/s")
    rc, took = run.signal_and_time(sig)
    assert rc == code, run.output
    assert took < 5.0, f"took {took:.1f} s to stop"
    assert "stopping every thread" in run.output
    assert "stopped:" in run.output
    assert "to continue: asyncrl train --resume run/latest.h5" in run.output
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.attrs["at_rest"] and ck.global_step > 0
    assert int(ck.thread_i[:, TI_STEPS].sum()) == ck.global_step


def test_resume_command_keeps_a_pause_not_yet_reached(tmp_path):
    run = Running(["--steps", "1000000000", "--stop-at", "900000000", "--threads", "2", "--log-interval", "0.2",
                   "--eval-every", "0", "--out", "run"], cwd=tmp_path)
    run.wait_for("steps/s")
    rc, _ = run.signal_and_time(signal.SIGINT)
    assert rc == 130, run.output
    assert "to continue: asyncrl train --resume run/latest.h5 --stop-at 900000000\n" in run.output


def test_second_sigint_exits_at_once_and_keeps_last_checkpoint(tmp_path):
    # Periodic evaluations of 100,000 episodes are always running, and the first Ctrl-C waits up
    # to STOP_TIMEOUT for the current one: the second Ctrl-C, after the grace period in which a
    # repeated signal is the same request, lands while the run is stopping.
    run = Running(["--steps", "1000000000", "--threads", "2", "--log-interval", "0.2", "--eval-every", "20000",
                   "--eval-episodes", "100000", "--save-every", "20000", "--out", "run"], cwd=tmp_path)
    run.wait_for("steps/s")
    deadline = time.monotonic() + 30
    while not (tmp_path / "run" / "latest.h5").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    before = checkpoint.load(tmp_path / "run" / "latest.h5").global_step
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("stopping every thread")
    time.sleep(StopSignals.GRACE + 0.2)   # a deliberate second Ctrl-C; sooner it is the same request
    rc, took = run.signal_and_time(signal.SIGINT)
    assert rc == 130, run.output
    assert took < 1.0
    assert "interrupted again: exiting now; the last checkpoint run/latest.h5 is intact" in run.output
    assert "stopped:" not in run.output
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.global_step >= before and np.isfinite(ck.theta).all()
    assert not list((tmp_path / "run").glob(".*.tmp")), "a temporary checkpoint was left behind"


def _interrupt_at_event(k):
    """A trace function that raises KeyboardInterrupt, as a signal handler would, at the k-th
    Python event (call or line) of this thread in numba_a3c's or h5py's code; returns it and a
    one-item list counting the events seen."""
    seen = [0]

    def trace(frame, event, arg):
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("numba_a3c", "h5py")):
            return None    # by module, not file name: CI's venv path itself contains "numba_a3c"
        if event in ("call", "line"):
            seen[0] += 1
            if seen[0] == k:
                raise KeyboardInterrupt
        return trace

    return trace, seen


def test_interrupted_save_leaves_the_old_checkpoint_intact(tmp_path):
    """An interrupt at any point of checkpoint.save leaves the previous file whole and no temporary
    file behind. The interrupt is injected deterministically at evenly spaced Python events of the
    save (a timer signal depends on the machine's speed: on a fast one, every save finished first).

    In a process of its own: an exception raised by a trace function between a lock's acquisition
    and the ``with`` block that releases it can leave the lock held, and it once left h5py's global
    lock owned by pytest's main thread, so that a later test's evaluation thread waited for it
    forever (reproduced by running this test before tests/test_cli_train.py)."""
    child = subprocess.run([sys.executable, "-c", "import sys, pathlib; sys.path.insert(0, sys.argv[1]); "
                            "import test_robustness as t; t.interrupted_saves(pathlib.Path(sys.argv[2]))",
                            str(Path(__file__).parent), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stdout + child.stderr


def interrupted_saves(tmp_path):
    """The body of the test above, run in a child process."""
    config = resolve(dict(threads=2, steps=1000, eval_every=0))
    trainer = Trainer(config, final_eval=False)
    path = tmp_path / "latest.h5"
    trainer.save(path)
    original = checkpoint.load(path).theta.copy()
    trainer.shared.theta[:] += 1.0

    trace, seen = _interrupt_at_event(0)             # count the events of one whole save
    sys.settrace(trace)
    try:
        trainer.save(tmp_path / "counted.h5")
    finally:
        sys.settrace(None)
    events = seen[0]
    assert events > 100

    points = sorted(set(np.linspace(1, events, 60).astype(int)) | {events - 2, events - 1})
    kept_old = 0
    for k in points:
        trace, seen = _interrupt_at_event(k)
        sys.settrace(trace)
        try:
            with pytest.raises(KeyboardInterrupt):
                trainer.save(path)
        finally:
            sys.settrace(None)
        theta = checkpoint.load(path).theta
        kept = np.array_equal(theta, original)
        replaced = np.array_equal(theta, trainer.shared.theta)   # interrupted after the rename
        assert kept or replaced, f"interrupted at event {k} of {events}: the file is neither old nor new"
        kept_old += kept
        assert not list(tmp_path.glob(".*.tmp")), f"interrupted at event {k} of {events}: a temp file is left"
    assert kept_old >= len(points) - 3       # only an interrupt after os.replace may find the new file
    trainer.save(path)                                # and an uninterrupted save still replaces it
    assert np.array_equal(checkpoint.load(path).theta, trainer.shared.theta)


def test_blocked_environment_does_not_hang_the_stop(tmp_path, monkeypatch):
    mark = tmp_path / "blocked"
    monkeypatch.setenv("ROBUST_BLOCKED_MARK", str(mark))    # touched by the environment when it blocks
    run = Running(["--env", "Robust/BlockingStep-v0", "--threads", "2", "--steps", "1000000000", "--no-env-processes",
                   "--log-interval", "0.2", "--eval-every", "0", "--out", "run"], cwd=tmp_path)
    run.wait_for("steps/s")
    deadline = time.monotonic() + 90.0
    while not mark.exists() and time.monotonic() < deadline and run.proc.poll() is None:
        time.sleep(0.05)
    assert mark.exists(), f"thread 1 never blocked; output:\n{run.output}"
    rc, took = run.signal_and_time(signal.SIGINT)
    assert took < STOP_TIMEOUT + 4.0
    assert rc == 1
    assert "worker thread(s) 1 did not stop within" in run.output
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert not ck.attrs["at_rest"]


def test_blocked_thread_does_not_hang_the_end_of_a_run(tmp_path):
    """Thread 1 blocks forever in step; thread 0 reaches the budget: the run still ends (after
    ``end_timeout``), says which thread was left behind, and saves."""
    import robustness_envs  # registers Robust/BlockingStep-v0

    config = resolve(dict(env="Robust/BlockingStep-v0", threads=2, steps=8000, eval_every=0, env_processes=False))
    trainer = Trainer(config, final_eval=False, run_dir=tmp_path)
    trainer.end_timeout = 1.0
    robustness_envs.BLOCKED.clear()
    robustness_envs.BlockingStep.others_wait = True   # thread 0 cannot spend the budget before thread 1 blocks
    t0 = time.monotonic()
    try:
        result = trainer.run()
    finally:
        robustness_envs.BlockingStep.others_wait = False
    assert time.monotonic() - t0 < 30
    assert result.status == "failed" and result.steps >= 8000
    assert "worker thread(s) 1 did not stop within 1 s" in result.error
    assert not checkpoint.load(tmp_path / "latest.h5").attrs["at_rest"]


# ============================================================================ 3. Hogwild safety
@pytest.mark.parametrize("algo", ["a3c", "onestep-q"])
def test_sixteen_threads_count_every_step_exactly(algo):
    """16 lock-free threads on however few cores: no crash, finite θ, and T equals the sum of
    the threads' own step counters (the atomic add loses nothing); T overshoots the budget by
    at most one step per thread."""
    budget = 250_000
    config = resolve(dict(algo=algo, threads=16, steps=budget, eval_every=0))
    trainer = Trainer(config, final_eval=False)
    result = trainer.run()
    assert result.status == "finished", result.error
    T = int(trainer.shared.counters[C_T])
    assert T == int(trainer.shared.thread_i[:, TI_STEPS].sum())
    assert budget <= T <= budget + 15
    assert (trainer.shared.thread_i[:, TI_STEPS] > 0).all()
    assert np.isfinite(trainer.shared.theta).all()


def test_atomic_add_loses_no_increment_under_contention():
    from numba import njit

    from numba_a3c.atomics import atomic_add

    @njit(nogil=True)
    def hammer(counters, n):
        for _ in range(n):
            atomic_add(counters, 0, 1)

    counters = np.zeros(1, np.int64)
    hammer(counters, 1)
    counters[0] = 0
    n, threads = 200_000, 16
    ts = [threading.Thread(target=hammer, args=(counters, n)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert counters[0] == n * threads


# ============================================================================ 4. soak (short)
def test_short_soak_passes():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--seconds", "8", "--interval", "1",
                        "--save-every", "50000", "--stall", "60"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "soak passed" in r.stdout and "exact" in r.stdout
    loaded = int(r.stdout.split("checkpoints loaded: ")[1].split()[0])
    assert loaded >= 2


@pytest.mark.slow
def test_ten_minute_soak():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "10"], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "soak passed" in r.stdout


def test_value_blowup_rule():
    from numba_a3c.monitor import BLOWUP_FACTOR, value_blowup

    config = resolve(dict(env="MountainCar-v0"))      # γ 0.99, no reward clipping
    assert value_blowup([5.0, -2.0], 200.0, 3, config) == ""                 # too few episodes to judge
    assert value_blowup([-150.0, 90.0], 200.0, 50, config) == ""            # within the returns' scale
    assert value_blowup([-2.8e6, 3.0], 600.0, 50, config).startswith(
        "the value estimate grew without bound: thread 0's mean V over its last segment is -2.8e+06")
    assert value_blowup([0.0, np.nan], 1.0, 50, config) == ""                # NaN is the finite check's job
    clipped = config.replace(reward_clip=1.0, algo="nstep-q")              # scale ≥ c/(1 − γ) = 100
    assert value_blowup([0.9 * BLOWUP_FACTOR * 100], 1.0, 50, clipped) == ""
    assert "mean Q" in value_blowup([1.1 * BLOWUP_FACTOR * 100], 1.0, 50, clipped)


def test_a_finite_value_blowup_is_a_divergence(tmp_path):
    """A value head driven to ±10⁷ while every loss is still finite stops the run as diverged, with
    what blew up and what to try, and the last good checkpoint kept."""
    config = resolve(dict(threads=2, steps=10**9, eval_every=0, save_every=2000, log_interval=0.05))
    holder = {}

    def blow_up(p):
        if "t" not in holder and trainer.episodes.seen >= 20 and trainer.files.last_good_save:
            holder["t"] = time.monotonic()
            trainer.network.view(trainer.shared.theta, "v/b")[:] = np.float32(1e7)

    trainer = Trainer(config, on_progress=blow_up, final_eval=False, run_dir=tmp_path)
    result = trainer.run()
    assert result.status == "diverged", result.error
    assert "the value estimate grew without bound" in result.error and "--reward-clip" in result.error
    assert time.monotonic() - holder["t"] < 5.0
    assert "the last good checkpoint" in result.error and "is kept" in result.error
    good, bad = checkpoint.load(tmp_path / "latest.h5"), checkpoint.load(tmp_path / "diverged.h5")
    assert np.isfinite(good.theta).all() and good.global_step <= bad.global_step
    assert np.abs(trainer.network.view(bad.theta, "v/b")).max() >= 1e6   # the blown-up state, for inspection
