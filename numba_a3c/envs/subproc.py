"""Child processes for the workers of Python environments: start, talk, fail plainly, never outlive the trainer.

A gymnasium environment's ``step`` is Python and holds the GIL: N worker threads stepping N
in-process environments take turns for that part, whatever the number of cores. The trainer
therefore runs each worker of a gymnasium environment (with 2 or more threads, by default) in a
process of its own, on the run's arrays in shared memory (:mod:`numba_a3c.worker_processes`). This
module holds what any such child needs: :class:`ChildProcess` (the parent's side), its start-up in
the child (:func:`child_connection`, :func:`register_spec`) and :func:`want_processes`, the choice.

A child is a fresh interpreter (``python -c``, :mod:`subprocess`) holding one end of a socket pair:
it imports nothing of the trainer's beyond what it needs (no re-run of the user's ``__main__`` as
multiprocessing's spawn would do), inherits no threads, locks or other children's pipes, runs in a
session of its own (a terminal's Ctrl-C reaches the trainer only) and, on Linux, is killed by the
kernel if the trainer dies (``PR_SET_PDEATHSIG``). It gets the trainer's ``sys.path``, and the
environment's gymnasium registration travels with it: the trainer's
:class:`gymnasium.envs.registration.EnvSpec` is pickled and registered in the child when the
child's own imports did not register the id (``module:Env-id``, an id a script registered).

Protocol: one request, one reply, strictly alternating, pickled over the socket pair; a reply is
``("ok", result)`` or ``("error", "Type: message (at file:line in function)")``; ``("close",)``
or EOF ends the child.

Failures and shutdown
    * The child's code raising: it replies with the exception described and the parent raises
      :class:`EnvProcessError` with it; the run fails with that one line.
    * The child dying (killed, a crashed extension): the parent holds no copy of the child's end of
      the socket, so its read ends at once with EOF and it raises :class:`EnvProcessError` naming
      the signal or exit code. Nothing waits on a dead child.
    * The parent ending in any way (SIGKILL and ``os._exit`` included): the child's read gets EOF
      (or the kernel's SIGKILL) and it exits. :meth:`ChildProcess.close` asks, then terminates,
      then kills.
    * Ctrl-C: a terminal signals the whole process group; the child ignores SIGINT, so the parent
      decides (it raises the stop flag, saves, and closes its children).
"""

import os
import pickle
import signal
import socket
import subprocess
import sys

from numba_a3c.envs.base import EnvError

#: Seconds a closing child gets to close its environment and exit before it is terminated.
CLOSE_TIMEOUT = 2.0

#: Whether this platform can run environment processes (they need socket pairs and fd passing).
AVAILABLE = os.name == "posix"


class EnvProcessError(RuntimeError):
    """A worker process failed: its environment or its learner raised, or the process died."""


def _die_with_parent(parent_pid):
    """Linux: ask the kernel to SIGKILL this process when its parent dies (even while ``step`` is stuck).

    Strictly, when the parent's thread that started it ends: the trainer starts its environments in
    the thread that runs the whole session (``Trainer.run``), which outlives them."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:   # the parent died before the request took effect
        os._exit(0)


def child_connection(fd, parent_pid):
    """A child's start-up: ignore SIGINT, die with the parent, read the trainer's ``sys.path`` (first:
    unpickling the rest may import the environment's module). Returns the connection."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    conn = Connection(fd)
    sys.path[:] = conn.recv()
    return conn


def register_spec(spec):
    """Register the trainer's EnvSpec ``spec`` (None: nothing to do) where this process's own
    imports did not register its id (``module:Env-id``, an id a script registered)."""
    if spec is not None:
        import gymnasium

        if spec.id not in gymnasium.registry:
            gymnasium.registry[spec.id] = spec


def registered_spec(info):
    """The gymnasium EnvSpec of ``info``'s id, if it is a registered gymnasium environment and picklable."""
    if info.kind != "gym" or info.maker is not None:
        return None
    import gymnasium

    spec = gymnasium.registry.get(info.env_id)
    if spec is None:
        return None
    try:
        pickle.dumps(spec)
    except Exception:  # noqa: BLE001 - then the child's own imports must register it
        return None
    return spec


class ChildProcess:
    """A fresh interpreter running ``code`` (its ``{sock}`` and ``{parent}`` filled in: the child's
    socket descriptor and this process's id) that talks to this process over a socket pair, one
    request and one reply at a time, and whose failures are :class:`EnvProcessError` with one line
    (module docstring, "Failures and shutdown"); :class:`numba_a3c.worker_processes.WorkerProcess`
    is the kind the trainer starts. ``pass_fds`` are further descriptors the child inherits."""

    def __init__(self, code, pass_fds=()):
        from multiprocessing.connection import Connection

        if not AVAILABLE:
            raise EnvError("environment processes need a POSIX system; train with --no-env-processes")
        mine, theirs = socket.socketpair()
        code = code.format(sock=theirs.fileno(), parent=os.getpid())
        try:
            self._process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(), *pass_fds),
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()   # the child's end lives only in the child: its death is EOF here
        self._conn = Connection(mine.detach())
        self._closed = False

    @property
    def pid(self):
        return self._process.pid

    def _start(self, payload):
        """Send the child the trainer's ``sys.path``, then the pickled ``payload``."""
        try:
            self._conn.send(list(sys.path))
            self._conn.send_bytes(pickle.dumps(payload))
        except OSError:   # the interpreter could not even start
            raise EnvProcessError(self._death("make")) from None

    def _send(self, what, request):
        try:
            self._conn.send(request)
        except (OSError, ValueError):
            raise EnvProcessError(self._death(what)) from None

    def _reply(self, what):
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            raise EnvProcessError(self._death(what)) from None
        if status != "ok":
            raise self._failure(what, payload)
        return payload

    def _failure(self, what, why):
        """The exception for the child's report ``why`` (``Type: message (at ...)``) of a failure during ``what``."""
        raise NotImplementedError

    def _died(self, how, what):
        """The one line for the child's death (``how``: "was killed by SIGKILL", ...) during ``what``."""
        raise NotImplementedError

    def _death(self, what):
        """Why the child is gone: its signal or exit code (waits up to a second for it to be reaped)."""
        try:
            code = self._process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        if self._closed:
            how = "did not answer and was ended when the run stopped"
        elif code is None:
            how = "closed its pipe"
        elif code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        return self._died(how, what)

    def close(self):
        """Ask the child to end and exit; terminate it, then kill it, if it does not."""
        if self._closed:
            return
        self._closed = True
        p = self._process
        if p.poll() is None:
            try:
                self._conn.send(("close",))
            except (OSError, ValueError):
                pass
        for stop in (None, p.terminate, p.kill):
            if p.poll() is None:
                if stop is not None:
                    stop()
                try:
                    p.wait(CLOSE_TIMEOUT if stop is None else 1.0)
                except subprocess.TimeoutExpired:
                    pass
        self._conn.close()


def want_processes(setting, info, threads):
    """Whether the workers of ``info`` run in processes of their own
    (:mod:`numba_a3c.worker_processes`): ``setting`` is the ``env_processes`` option. True asks for
    them and raises :class:`EnvError` when they cannot be had; False never; None, the default,
    means yes for a gymnasium environment trained by 2 or more threads where they can be had (a
    POSIX system, an environment a fresh interpreter can make: a picklable callable, nothing
    defined in the script being run), no otherwise: one thread stays in this process, and Atari's
    emulator and the native environments step with the GIL released."""
    if setting is None:
        if threads < 2 or info.kind != "gym" or not AVAILABLE:
            return False
        try:
            return want_processes(True, info, threads)
        except EnvError:
            return False
    if not setting:
        return False
    if not AVAILABLE:
        raise EnvError("--env-processes needs a POSIX system (socket pairs and inherited descriptors); "
                       "drop --env-processes")
    if info.kind == "native":
        raise EnvError(f"--env-processes steps Python environments in processes of their own; {info.env_id} is a "
                       f"native (Numba) one, which never holds the GIL: drop --env-processes (or add --gym)")
    if info.maker is not None:
        try:
            pickle.dumps(info.maker)
        except Exception:  # noqa: BLE001 - whatever pickle raised, the answer is the same
            raise EnvError(f"env_processes=True: the environment callable {info.env_id} cannot be pickled to start "
                           f"it in another process (a lambda or a local function?); define it at module level, "
                           f"or train with env_processes=False") from None
    script = _defined_in_script(info)
    if script:
        raise EnvError(f"--env-processes: {info.env_id}'s {script} is defined in the script being run (__main__), "
                       f"which a worker process does not run; move it into a module of its own, or drop "
                       f"--env-processes")
    return True


def _defined_in_script(info):
    """What of ``info``'s environment lives in ``__main__`` ("environment callable", "entry point"),
    or "": pickled, it would name ``__main__.X``, and a worker process's ``__main__`` is not the
    user's script."""
    def in_main(obj):
        module = obj.split(":")[0] if isinstance(obj, str) else getattr(obj, "__module__", None)
        return module == "__main__"

    if info.maker is not None:
        return "environment callable" if in_main(info.maker) else ""
    if info.kind == "gym":
        import gymnasium

        spec = gymnasium.registry.get(info.env_id)
        if spec is not None and in_main(spec.entry_point):
            return "entry point"
    return ""
