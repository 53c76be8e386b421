"""Worker processes: each actor-learner of a Python environment in a process of its own.

A gymnasium environment's ``step`` is Python and holds the GIL, so N worker *threads* stepping N
Python environments take turns for that part, whatever the number of cores. With
``--env-processes`` each worker runs in a child process instead: the very loop a thread runs
(:func:`numba_a3c.workers.python_env_loop`: the environment's step, then the nopython kernels),
on the very arrays, because every array of the run's :class:`~numba_a3c.workers.SharedState`
lives in one block of shared memory (:class:`SharedBlock`, a memfd on Linux) that the children
map. The paper's threads become processes; nothing else changes.

Shared by every worker process (and the parent), written WITHOUT locks
    θ ``theta``, the RMSProp statistics ``opt_shared``, θ⁻ ``theta_target``, the normalisation
    statistics ``norm_stats`` and ``value_stats``: exactly as between threads (workers.py), Hogwild across
    processes.
Shared and written atomically
    ``counters`` (the global step T, the θ⁻ refresh, the stop flag, the status): the atomic add and
    compare-and-swap of :mod:`numba_a3c.atomics` are the CPU's instructions on a shared cache line,
    which work between processes as between threads.
One row per worker, written only by its process, read by the parent
    ``thread_i``, ``thread_f``, ``episode_log``, the RNG states, ``obs[k]``, ``ws[k]``,
    ``opt_private[k]``, ``norm_ret[k]``.
Private to a worker process
    θ′, dθ and the segment buffers (its :func:`~numba_a3c.workers.make_learner`), its environment.

The child's side is :mod:`numba_a3c.worker_child`. The parent keeps one thread per worker, blocked
reading its process's socket (the GIL released), so the monitor, the evaluations, the saves and
the stop flag work as with threads. One thread with a fixed seed computes the same θ as in-process
(tests/test_env_processes.py). On the 2-core machine, two LunarLander-v3 workers reach about twice
one in-process thread's rate, where two threads of one process reach about 0.9× (README, "Python
environments on every core").

Protocol (a socket pair, one request and one reply; :class:`~numba_a3c.envs.subproc.ChildProcess`
says how failures and shutdown are handled)::

    parent → child   sys.path; then pickled (config, env_info, network spec, block layout, block size,
                     k, EnvSpec)
    child  → parent  ("ok", None) once its environment is made and reset into obs[k, 0],
                     or ("error", "Type: message (at file:line in function)")
    parent → child   ("go",)  (or ("close",), or EOF: the child exits)
    child  → parent  ("ok", status) when its loop ends (BUDGET_DONE, STOPPED, DIVERGED),
                     or ("error", ...) when its environment or its loop raised
"""

import mmap
import os
import tempfile
import weakref
from dataclasses import fields, replace

import numpy as np

from numba_a3c.envs.subproc import ChildProcess, EnvProcessError, registered_spec

#: Every array is placed at a multiple of this many bytes (a cache line).
ALIGN = 64


class SharedBlock:
    """One block of memory that child processes map (a memfd on Linux, an unlinked temporary file
    elsewhere), holding named arrays at fixed offsets (``layout``: (name, dtype, shape, offset))."""

    def __init__(self, fd, size, layout):
        self.fd = fd
        self.size = size
        self.layout = layout
        self._map = mmap.mmap(fd, size)
        weakref.finalize(self, os.close, fd)   # the mapping stays while arrays view it

    @classmethod
    def create(cls, layout, size):
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("asyncrl-shared-state", os.MFD_CLOEXEC)
        else:
            with tempfile.TemporaryFile() as f:
                fd = os.dup(f.fileno())
        os.ftruncate(fd, size)
        return cls(fd, size, layout)

    def arrays(self):
        """The named arrays, views of the block: {name: ndarray}."""
        return {name: np.ndarray(shape, np.dtype(dtype), buffer=self._map, offset=offset)
                for name, dtype, shape, offset in self.layout}


def share_state(state):
    """``state`` (a :class:`~numba_a3c.workers.SharedState`) with every array copied into one new
    :class:`SharedBlock` (its ``memory``), so that worker processes can map them."""
    layout, offset = [], 0
    for f in fields(state):
        a = getattr(state, f.name)
        if isinstance(a, np.ndarray):
            layout.append((f.name, a.dtype.str, a.shape, offset))
            offset += -(-a.nbytes // ALIGN) * ALIGN
    block = SharedBlock.create(layout, offset + ALIGN)
    arrays = block.arrays()
    for name, a in arrays.items():
        a[...] = getattr(state, name)
    return replace(state, memory=block, **arrays)


class WorkerProcess(ChildProcess):
    """Worker ``k`` of a run whose state is in shared memory, in a process of its own: it starts at
    once and makes and resets its environment while the caller goes on (:meth:`wait_ready` waits);
    :meth:`run` lets it train and returns the status its loop ended with."""

    def __init__(self, shared, config, env_info, network, k):
        self.k = k
        self.env_id = env_info.env_id
        block = shared.memory
        super().__init__("from numba_a3c.worker_child import child_main; "
                         f"child_main({{sock}}, {block.fd}, {{parent}})", pass_fds=(block.fd,))
        self._start((config, env_info, network.spec, block.layout, block.size, k, registered_spec(env_info)))

    def wait_ready(self):
        self._reply("make")

    def run(self):
        self._send("training", ("go",))
        return self._reply("training")

    def _failure(self, what, why):
        """The child's exception, described as a worker thread's would be, and where it ran."""
        exc = EnvProcessError(why)
        exc.description = f"{why} (in its worker process, pid {self.pid})"
        return exc

    def _died(self, how, what):
        doing = "while making its environment" if what == "make" else f"during {what}"
        return (f"the process of worker {self.k} ({self.env_id}, pid {self.pid}) {how} {doing}; the run stops "
                f"(train with --no-env-processes to run the workers as threads of this process)")
