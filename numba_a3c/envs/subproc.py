"""Python environments stepped in processes of their own, so that a worker thread waits with the GIL released.

A gymnasium environment's ``step`` is Python and holds the GIL: N worker threads stepping N
in-process environments take turns for that part, whatever the number of cores. :class:`ProcessEnv`
moves one environment into a child process and talks to it through a socket pair. The worker
thread that owns it blocks in ``os.read`` while the child steps, and ``os.read`` releases the GIL,
so N threads' environments step on N cores beside the learners' nopython kernels. The price is a
round trip per step (pickling, two wake-ups): worth it only when ``step`` costs more than that;
``asyncrl bench throughput --gym --env-processes both`` measures both ways side by side.

Default: off (the environment steps in the worker thread) unless ``--env-processes`` asks for it.
On the idle 2-core machine this was built on, a LunarLander-v3 training step cost about 54 µs
in-process and 275 µs through a child (a round trip, two wake-ups of a sleeping process, about
200 µs), and 2 threads with processes reached 0.51× one thread in-process (README, "Python
environments on every core", for the command and the table). Processes pay where a step costs
more than a round trip and idle cores wait for it.

Protocol: one request, one reply, strictly alternating; only the worker thread that owns a
:class:`ProcessEnv` talks to it (the main thread closes it once that worker has ended)::

    parent → child    ("step", action)  |  ("reset", seed, options)  |  ("close",)
    child  → parent   ("ok", result)    |  ("error", "Type: message (at file:line in function)")

``result`` is exactly what the in-process call returns: ``(obs, reward, terminated, truncated,
info)`` for ``step``, ``(obs, info)`` for ``reset``. The child makes its environment with
:func:`~numba_a3c.envs.registry.make_python_env` and the same seed as the in-process path, and
does nothing on its own: auto-reset, truncation and seeding stay with the caller (the worker calls
``reset`` after an episode ends), so a process environment's trajectory is the in-process one's,
step for step (tests/test_env_processes.py checks it).

Failures and shutdown
    * ``step`` or ``reset`` raising in the child: the child replies with the exception described and
      the parent raises :class:`EnvProcessError` with it; the worker fails as it would in-process.
    * The child dying (killed, a crashed extension): the parent holds no copy of the child's end of
      the pipe, so its read ends at once with EOF and it raises :class:`EnvProcessError` naming
      the signal or exit code. Nothing waits on a dead child.
    * The parent ending in any way (SIGKILL and ``os._exit`` included): the child's read gets EOF and
      it exits. Children are also daemonic (terminated at interpreter exit), and
      :meth:`ProcessEnv.close` asks, then terminates, then kills.
    * Ctrl-C: a terminal signals the whole process group; the child ignores SIGINT, so the parent
      decides (it stops its workers, saves, and closes the environments).

A child is a fresh interpreter (``python -c``, :mod:`subprocess`) holding one end of a socket pair:
it imports nothing of the trainer's (no numba, no re-run of the user's ``__main__`` as
multiprocessing's spawn would do), inherits no threads, locks or other children's pipes, runs in a
session of its own (a terminal's Ctrl-C reaches the trainer only) and, on Linux, is killed by the
kernel if the trainer dies while it is stuck in ``step`` (``PR_SET_PDEATHSIG``). It gets the
trainer's ``sys.path``, and the environment's gymnasium registration travels with it: the
trainer's :class:`gymnasium.envs.registration.EnvSpec` is pickled and registered in the child when
the child's own imports did not register the id (``module:Env-id``, an id a script registered).
"""

import os
import pickle
import signal
import socket
import subprocess
import sys

from numba_a3c.envs.base import EnvError
from numba_a3c.envs.registry import make_python_env

#: Seconds a closing child gets to close its environment and exit before it is terminated.
CLOSE_TIMEOUT = 2.0

#: Whether this platform can run environment processes (they need socket pairs and fd passing).
AVAILABLE = os.name == "posix"


class EnvProcessError(RuntimeError):
    """An environment process failed: its environment raised, or the process died."""


def _describe(exc):
    """``Type: message (at file:line in function)``, from the innermost frame (the child does not import the
    workers' numba-laden module for its twin, :func:`numba_a3c.workers.describe_exception`)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


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


def child_main(fd, parent_pid):
    """The child process: read sys.path, then (info, seed, spec), from the socket ``fd``; make the environment,
    then answer requests until "close" or EOF (the trainer is gone).

    The first reply says whether the environment could be made: ("ok", None) or ("error", why).
    """
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    conn = Connection(fd)
    env = None
    try:
        sys.path[:] = conn.recv()      # first: unpickling the rest may import the environment's module
        info, seed, spec = pickle.loads(conn.recv_bytes())
        if spec is not None:
            import gymnasium

            if spec.id not in gymnasium.registry:
                gymnasium.registry[spec.id] = spec
        env = make_python_env(info, seed=seed)
        conn.send(("ok", None))
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request[0] == "close":
                return
            try:
                if request[0] == "step":
                    result = env.step(request[1])
                else:
                    result = env.reset(seed=request[1], options=request[2])
                reply = ("ok", result)
            except Exception as exc:  # noqa: BLE001 - the parent reports whatever the environment raised
                reply = ("error", _describe(exc))
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send(("error", f"its {request[0]} result cannot be sent to the trainer process "
                                    f"({_describe(exc)}); train with --no-env-processes"))
    except (EOFError, OSError):
        return
    except Exception as exc:  # noqa: BLE001 - making the environment failed: tell the parent, then exit
        try:
            conn.send(("error", _describe(exc)))
        except (OSError, ValueError):
            pass
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - nothing is left to report it to
                pass
        conn.close()


def _registered_spec(info):
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


class ProcessEnv:
    """``info``'s environment, made with ``seed``, in a process of its own; ``reset``, ``step`` and ``close``
    as a gymnasium.Env's (the reply of each is the in-process call's).

    The process starts at once and makes its environment while the caller goes on (so making the
    environments of N threads overlaps); the first call waits for it.
    """

    def __init__(self, info, seed=None):
        from multiprocessing.connection import Connection

        if not AVAILABLE:
            raise EnvError("environment processes need a POSIX system; train with --no-env-processes")
        self.env_id = info.env_id
        mine, theirs = socket.socketpair()
        code = f"from numba_a3c.envs.subproc import child_main; child_main({theirs.fileno()}, {os.getpid()})"
        try:
            self._process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),),
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            theirs.close()   # the child's end lives only in the child: its death is EOF here
        self._conn = Connection(mine.detach())
        self._made = False
        self._closed = False
        try:
            self._conn.send(list(sys.path))
            self._conn.send_bytes(pickle.dumps((info, seed, _registered_spec(info))))
        except OSError:   # the interpreter could not even start
            raise EnvProcessError(self._death("make")) from None

    @property
    def pid(self):
        return self._process.pid

    def step(self, action):
        return self._call("step", ("step", int(action)))

    def reset(self, seed=None, options=None):
        return self._call("reset", ("reset", seed, options))

    def _call(self, what, request):
        if self._closed:
            raise EnvProcessError(f"the environment process of {self.env_id} is closed")
        if not self._made:
            self._reply("make")
            self._made = True
        try:
            self._conn.send(request)
        except (OSError, ValueError):
            raise EnvProcessError(self._death(what)) from None
        return self._reply(what)

    def _reply(self, what):
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            raise EnvProcessError(self._death(what)) from None
        if status != "ok":
            doing = "making it" if what == "make" else what
            raise EnvProcessError(f"{self.env_id} raised in its environment process (pid {self.pid}) during "
                                  f"{doing}: {payload}")
        return payload

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
        doing = "while making the environment" if what == "make" else f"during {what}"
        return (f"the environment process of {self.env_id} (pid {self.pid}) {how} {doing}; "
                f"the run stops (train with --no-env-processes to step it in this process)")

    def close(self):
        """Ask the child to close its environment and exit; terminate it, then kill it, if it does not."""
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
    """Whether the workers' environments of ``info`` step in processes: ``setting`` is the
    ``env_processes`` option; None, the default, is no (module docstring, "Default"). Raises
    :class:`EnvError` when they were asked for and cannot be had."""
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
    return True


def make_worker_env(info, seed, processes):
    """A worker's environment: in a process of its own (:class:`ProcessEnv`) or in this one."""
    if processes:
        return ProcessEnv(info, seed=seed)
    return make_python_env(info, seed=seed)
