"""Nothing lost (issue 11): doubled signals, parallel runs, locked run directories, SIGKILL at
random moments, a full disk, an episode log that does not grow in memory, hostile checkpoints.

Every fault is real: ``asyncrl train`` runs in a subprocess (in its own process group, so a
signal to the group reaches only it), signals are real signals, SIGKILL is SIGKILL, the full
disk is a small tmpfs. The table in docs/robustness.md names each test.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_robustness import CLI, Running, _env, run_cli

from numba_a3c import checkpoint, episode_log, rundir
from numba_a3c.algorithms.state import EPISODE_LOG_CAPACITY, TI_EPISODES, TI_STEPS
from numba_a3c.config import resolve
from numba_a3c.trainer import SAVE_SECONDS, Trainer

TESTS = Path(__file__).parent
FUZZ = TESTS / "fuzz_checkpoints.py"
LONG = ["--steps", "100000000", "--eval-every", "0", "--log-interval", "0.2"]


def Group(args, cwd):
    """``asyncrl train`` in a subprocess that leads its own process group (as under GNU timeout)."""
    return Running(args, cwd, new_session=True)


def assert_resumable(path, steps_more=2000):
    """latest.h5 loads, is finite, its counters are exact, and a trainer can continue it."""
    ck = checkpoint.load(path)
    assert np.isfinite(ck.theta).all()
    assert int(ck.thread_i[:, TI_STEPS].sum()) == ck.global_step or not ck.attrs["at_rest"]
    trainer = Trainer.from_checkpoint(path, dict(steps=ck.global_step + steps_more), final_eval=False)
    assert int(trainer.shared.counters[0]) == ck.global_step
    return ck


# ============================================================================ signals
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_to_the_process_and_its_group_is_one_request(tmp_path, sig, code):
    """What GNU timeout does: the signal to the process, then at once to its process group."""
    run = Group(LONG + ["--out", "run"], cwd=tmp_path)
    run.wait_for("steps/s")
    run.proc.send_signal(sig)
    os.killpg(run.proc.pid, sig)
    rc = run.wait_exit()
    assert rc == code, run.output
    assert "interrupted again" not in run.output and "stopped:" in run.output
    ck = assert_resumable(tmp_path / "run" / "latest.h5")
    assert ck.attrs["at_rest"] and ck.global_step > 0


def test_gnu_timeout_int_leaves_a_resumable_run(tmp_path):
    """``timeout -s INT N asyncrl train``: a saved, resumable run, then resumed by the CLI."""
    gnu_timeout = shutil.which("timeout")
    if gnu_timeout is None:
        pytest.skip("GNU timeout is not installed")
    t0 = time.monotonic()    # how long start-up takes here (kernels cached by now), to choose N
    warm = run_cli(["--steps", "2000", "--eval-every", "0", "--eval-episodes", "1", "--quiet", "--out", "warm"],
                   cwd=tmp_path)
    assert warm.returncode == 0, warm.stdout + warm.stderr
    n = max(2, int(2 * (time.monotonic() - t0)) + 1)
    proc = subprocess.run([gnu_timeout, "-s", "INT", "--preserve-status", str(n)] + CLI
                          + ["train"] + LONG + ["--out", "run"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=n + 60)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "interrupted again" not in proc.stderr
    ck = assert_resumable(tmp_path / "run" / "latest.h5")
    resumed = run_cli(["--resume", "run", "--steps", str(ck.global_step + 3000), "--eval-episodes", "1", "--quiet"],
                      cwd=tmp_path)
    assert resumed.returncode == 0 and "finished:" in resumed.stdout, resumed.stdout + resumed.stderr
    assert checkpoint.load(tmp_path / "run" / "latest.h5").global_step >= ck.global_step + 3000


def test_doubled_signal_while_the_kernels_load_saves_a_resumable_run(tmp_path):
    """A doubled signal after the inputs were checked but before the workers run (kernels
    loading): the run starts, stops at once and saves a resumable latest.h5."""
    run = Group(LONG + ["--out", "run"], cwd=tmp_path)
    run.wait_for("configuration:")
    run.proc.send_signal(signal.SIGINT)
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.wait_exit() == 130, run.output
    assert "Traceback" not in run.output and "stopped:" in run.output
    assert_resumable(tmp_path / "run" / "latest.h5")


# ============================================================================ run directories
def test_default_run_directories_are_created_atomically(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(rundir.create_unique(tmp_path, "same-name")))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made)[:2] == ["same-name", "same-name-10"]


def test_parallel_runs_without_out_get_their_own_directories(tmp_path):
    procs = [subprocess.Popen(CLI + ["train", "--seed", str(s), "--steps", "3000", "--eval-every", "0",
                                     "--eval-episodes", "1", "--quiet"], cwd=tmp_path, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for s in range(3)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 3, outputs
    seeds = sorted(checkpoint.load(d / "latest.h5").config.seed for d in dirs)
    assert seeds == [0, 1, 2]
    for d in dirs:
        assert {"config.json", "latest.h5", "episodes.csv", "evaluations.csv"} <= {p.name for p in d.iterdir()}


def test_a_running_run_directory_is_locked(tmp_path):
    run = Group(LONG + ["--out", "run", "--save-seconds", "0.2"], cwd=tmp_path)
    run.wait_for("steps/s")
    while not (tmp_path / "run" / "latest.h5").exists():
        time.sleep(0.05)
    for args in (["--resume", "run"], ["--out", "run", "--force"], ["--out", "run"],
                 ["--resume", "run/latest.h5", "--out", "run", "--force"]):
        second = run_cli(args + ["--steps", "200000000", "--quiet"], cwd=tmp_path)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: run directory run is in use by process "
                                                       f"{run.proc.pid} "), second.stderr
        assert "Traceback" not in second.stderr
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_exit() == 130
    assert not (tmp_path / "run" / ".lock").exists()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    run = Group(LONG + ["--out", "run", "--save-seconds", "0.2"], cwd=tmp_path)
    run.wait_for("steps/s")
    while not (tmp_path / "run" / "latest.h5").exists():
        time.sleep(0.05)
    run.proc.kill()
    run.wait_exit()
    assert (tmp_path / "run" / ".lock").exists()
    done = checkpoint.load(tmp_path / "run" / "latest.h5").global_step
    resumed = run_cli(["--resume", "run", "--steps", str(done + 2000), "--eval-episodes", "1", "--quiet"],
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"note: took over the lock of run left by process {run.proc.pid} " in resumed.stderr


# ============================================================================ periodic checkpoints, SIGKILL
def test_periodic_checkpoints_are_on_by_default(tmp_path):
    assert 0 < SAVE_SECONDS <= 60
    trainer = Trainer(resolve(dict(threads=2, steps=10**9, eval_every=0)), final_eval=False, run_dir=tmp_path,
                      save_seconds=0.3)
    assert Trainer(resolve(dict(threads=1, steps=10)), run_dir=tmp_path).save_seconds == SAVE_SECONDS
    seen = []

    def watch():
        deadline = time.monotonic() + 300     # compiling the kernels on a busy machine is slow
        while len(seen) < 3 and time.monotonic() < deadline:
            p = tmp_path / "latest.h5"
            if p.exists():
                step = checkpoint.load(p).global_step
                if not seen or step > seen[-1]:
                    seen.append(step)
            time.sleep(0.05)
        trainer.request_stop()

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = trainer.run()
    watcher.join()
    assert result.status == "stopped" and len(seen) >= 3, seen
    assert_resumable(tmp_path / "latest.h5")


def sigkill_at_random_moments(tmp_path, kills, seed):
    """Kill one run at ``kills`` random moments (each time resuming it), saves every 0.2 s."""
    rng = random.Random(seed)
    args = LONG + ["--out", "run", "--save-seconds", "0.2", "--hidden", "256,256", "--quiet"]
    steps = []
    for k in range(kills):
        run = Group((["--resume", "run", "--save-seconds", "0.2", "--quiet"] if k else args), cwd=tmp_path)
        deadline = time.monotonic() + 120
        latest = tmp_path / "run" / "latest.h5"
        start_mtime = latest.stat().st_mtime_ns if latest.exists() else 0
        while time.monotonic() < deadline and not (latest.exists() and latest.stat().st_mtime_ns != start_mtime):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))      # a random moment, usually inside or between saves
        run.proc.kill()
        run.wait_exit()
        ck = checkpoint.load(latest)             # the whole log, read back from episodes.csv too
        assert np.isfinite(ck.theta).all()
        assert len(ck.episodes) >= ck.attrs["csv_rows"] > 0
        steps.append(ck.global_step)
    assert_resumable(tmp_path / "run" / "latest.h5")
    assert steps == sorted(steps) and steps[-1] > steps[0]
    return steps


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    sigkill_at_random_moments(tmp_path, kills=5, seed=0)


@pytest.mark.slow
def test_fifty_sigkills_leave_a_loadable_checkpoint(tmp_path):
    sigkill_at_random_moments(tmp_path, kills=50, seed=1)


# ============================================================================ a full disk
@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); the full-disk test cannot run here")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the full-disk test cannot run")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_during_a_save_keeps_the_last_good_checkpoint(small_tmpfs):
    run = Group(LONG + ["--out", str(small_tmpfs / "run"), "--save-seconds", "0.2", "--hidden", "256,256"],
                cwd=small_tmpfs.parent)
    run.wait_for("steps/s")
    latest = small_tmpfs / "run" / "latest.h5"
    while not latest.exists():
        time.sleep(0.05)
    good = checkpoint.load(latest)
    try:                                              # the disk fills up
        with open(small_tmpfs / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
    except OSError:
        pass
    rc = run.wait_exit(timeout=60)
    assert rc == 1, run.output
    assert "No space left on device" in run.output
    # No traceback at all: HDF5 builds the file in memory and Python writes it, so the full disk is
    # one OSError (when h5py wrote the file itself, its destructors echoed the error and the
    # process sometimes crashed with SIGSEGV at exit).
    assert "Traceback" not in run.output and 'File "' not in run.output, run.output
    error = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "could not" in error[0], run.output
    ck = checkpoint.load(latest)
    assert np.isfinite(ck.theta).all() and ck.global_step >= good.global_step
    assert not list((small_tmpfs / "run").glob(".*.tmp")), "a temporary file was left on the full disk"


# ============================================================================ the episode log
def feed_episodes(trainer, n, start):
    """As if thread 0 finished ``n`` episodes: written into its ring buffer, then drained."""
    log = trainer.shared.episode_log
    for i in range(start, start + n):
        log[0, i % EPISODE_LOG_CAPACITY] = (i + 1, float(i), 1.0)
    trainer.shared.thread_i[0, TI_EPISODES] = start + n
    trainer.drain_episodes(0.0)


def test_episode_log_is_appended_not_kept(tmp_path):
    trainer = Trainer(resolve(dict(threads=2, steps=1000, eval_every=0)), final_eval=False, run_dir=tmp_path)
    total = 0
    for _ in range(12):
        feed_episodes(trainer, 4000, total)
        total += 4000
        trainer.flush_episodes()
        assert len(trainer.episode_rows) <= episode_log.TAIL     # memory does not grow with the run
    trainer.save(tmp_path / "latest.h5")
    rows = episode_log.read_rows(tmp_path / "episodes.csv")
    assert len(rows) == total and np.array_equal(rows[:, 2], np.arange(total))
    ck = checkpoint.load(tmp_path / "latest.h5", whole_log=False)
    assert len(ck.episodes) == episode_log.TAIL and ck.attrs["log_first_row"] == total - episode_log.TAIL
    whole = checkpoint.load(tmp_path / "latest.h5").episodes      # put back together from episodes.csv
    assert len(whole) == total and np.array_equal(whole[:, 2], np.arange(total))


def test_resume_cuts_the_log_a_killed_session_appended(tmp_path):
    """Rows appended after the last checkpoint (the session was then killed) are cut on resume."""
    trainer = Trainer(resolve(dict(threads=2, steps=10**6, eval_every=0)), final_eval=False, run_dir=tmp_path)
    feed_episodes(trainer, 500, 0)
    trainer.flush_episodes()
    trainer.save(tmp_path / "latest.h5")
    feed_episodes(trainer, 300, 500)
    trainer.flush_episodes()                     # in episodes.csv, but in no checkpoint
    trainer.files.close()
    assert len(episode_log.read_rows(tmp_path / "episodes.csv")) == 800
    resumed = Trainer.from_checkpoint(tmp_path / "latest.h5", run_dir=tmp_path, final_eval=False)
    resumed.flush_episodes()
    rows = episode_log.read_rows(tmp_path / "episodes.csv")
    assert len(rows) == 500 and np.array_equal(rows[:, 2], np.arange(500))
    resumed.files.close()


def test_a_paused_and_continued_run_keeps_its_whole_log(tmp_path):
    trainer = Trainer(resolve(dict(threads=2, steps=40000, eval_every=0)), final_eval=False, run_dir=tmp_path)
    assert trainer.run(stop_at=20000).status == "paused"
    assert trainer.run().status == "finished"
    rows = episode_log.read_rows(tmp_path / "episodes.csv")
    assert len(rows) == int(trainer.shared.thread_i[:, TI_EPISODES].sum()) > 0
    assert len(checkpoint.load(tmp_path / "latest.h5").episodes) == len(rows)


# ============================================================================ hostile checkpoints
def fuzz(tmp_path, cases, seed):
    """Mutate and truncate a checkpoint at ``cases`` random places; inspect, eval and --resume each.
    The whole loop runs in one subprocess, so a crash of the interpreter shows as a signal."""
    trainer = Trainer(resolve(dict(threads=2, steps=3000, eval_every=0, eval_episodes=1)), final_eval=False,
                      run_dir=tmp_path / "source")
    (tmp_path / "source").mkdir()
    assert trainer.run().status == "finished"
    proc = subprocess.run([sys.executable, str(FUZZ), str(tmp_path / "source" / "latest.h5"), str(tmp_path / "fz"),
                           str(cases), str(seed)], env=_env(), capture_output=True, text=True, timeout=60 + 6 * cases)
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert f"fuzz: {cases} cases" in proc.stdout, proc.stdout


def test_hostile_checkpoints_give_one_line_or_work(tmp_path):
    fuzz(tmp_path, cases=40, seed=0)


@pytest.mark.slow
def test_hostile_checkpoints_three_hundred_places(tmp_path):
    fuzz(tmp_path, cases=300, seed=1)
