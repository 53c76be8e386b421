"""Run directories: default names that cannot collide, and a lock held while a run uses one.

* :func:`create_unique` makes a new directory with ``os.mkdir``, which fails if the name is
  taken, and tries ``<stem>-2``, ``<stem>-3``, ... until one is free: parallel runs started in the
  same second each get their own directory, atomically, with no check-then-create race.
* :func:`acquire` takes the run directory's lock: an exclusive ``flock`` on ``<dir>/.lock``,
  which records the holder (process id, host, start time, command). The main thread of
  ``asyncrl train`` takes it before it writes anything into the directory and holds it until the
  process ends. The kernel drops an ``flock`` when its process dies, however it dies (SIGKILL,
  the out-of-memory killer), so a lock left by a killed run is stale by construction: the next
  run takes it over and reports whose it was. A second run that finds the lock held gets
  :class:`RunDirInUse`, whose message names the holding process.
* :func:`remove_stale_temporaries` deletes the temporary files of saves that a killed run left
  half-written (``.latest.h5.*.tmp``); only the lock's holder calls it.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = ".lock"


class RunDirInUse(ValueError):
    """The run directory is locked by another live process; the message names it."""


def create_unique(parent, stem):
    """Create and return ``parent/stem`` (or ``stem-2``, ``stem-3``, ...: the first name free)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 100_000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free run directory name {parent / stem}-N")


def _describe(holder):
    if not holder:
        return "another process (it has not recorded its id yet)"
    return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (started {holder.get('started', '?')}: "
            f"{holder.get('command', '?')})")


def _read_holder(fd):
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """A held run-directory lock. ``previous`` describes a stale lock it took over ("" if none)."""

    def __init__(self, path, fd, previous):
        self.path = path
        self._fd = fd
        self.previous = previous

    def release(self):
        """Remove the lock file (while still holding it, so no one can take a lock on a file that
        is about to disappear) and let go. Idempotent."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def holder_of(run_dir):
    """The description of the live process holding ``run_dir``'s lock, or None if it is free."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(_read_holder(fd))
    except OSError:
        return None             # a file system without locks: nothing to learn here
    finally:
        os.close(fd)
    return None


def in_use_message(run_dir, holder):
    return (f"run directory {run_dir} is in use by {holder}; stop that run first (Ctrl-C, or kill its process), "
            f"or choose another --out")


def acquire(run_dir):
    """Lock ``run_dir`` for this process; returns a :class:`RunLock`, or None where the file
    system does not support locks. Raises :class:`RunDirInUse` when a live process holds it."""
    path = Path(run_dir) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirInUse(in_use_message(run_dir, _describe(holder))) from None
        except OSError:
            os.close(fd)
            return None
        # The previous holder unlinks the file as it lets go: if that happened between our open
        # and our flock, we hold a lock on a file no one else will open; start again.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_holder(fd)
    me = dict(pid=os.getpid(), host=socket.gethostname(),
              started=datetime.datetime.now().isoformat(timespec="seconds"),
              command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:300])
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return RunLock(path, fd, _describe(stale) if stale else "")


def remove_stale_temporaries(run_dir):
    """Delete half-written save files (``.<name>.*.tmp``) left by a run that was killed while
    saving; returns how many. Call it only while holding the directory's lock."""
    removed = 0
    for tmp in Path(run_dir).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
