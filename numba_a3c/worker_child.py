"""The body of a worker process (:mod:`numba_a3c.worker_processes` says what is shared and the protocol).

Started as ``python -c "from numba_a3c.worker_child import child_main; child_main(SOCK, MEMFD, PARENT)"``
by :class:`~numba_a3c.worker_processes.WorkerProcess`: it maps the run's arrays, builds worker k's
learner and environment exactly as a worker thread's are built, and runs the same loop
(:func:`numba_a3c.workers.python_env_loop`).
"""

import pickle

import numpy as np

from numba_a3c.envs.registry import make_python_env
from numba_a3c.envs.subproc import child_connection, register_spec
from numba_a3c.nn.network import Network
from numba_a3c.worker_processes import SharedBlock
from numba_a3c.workers import (
    SharedState,
    describe_exception,
    make_learner,
    normalizer,
    python_env_loop,
    python_env_step,
    start_python_episode,
)


def child_main(sock, mem_fd, parent_pid):
    """A worker process: map the run's arrays, build worker ``k``'s learner and environment, reset
    it, say so; on "go", run the loop until the budget, the stop flag or a divergence ends it."""
    conn = env = None
    try:
        conn = child_connection(sock, parent_pid)
        config, env_info, network_spec, layout, size, k, spec = pickle.loads(conn.recv_bytes())
        register_spec(spec)
        block = SharedBlock(mem_fd, size, layout)
        shared = SharedState(memory=block, **block.arrays())
        network = Network(network_spec)
        L, N = make_learner(shared, network, k), normalizer(shared, k)
        seed = config.seed * 1000 + k      # as a worker thread's (workers.Workers.reset_environments)
        env = make_python_env(env_info, seed=seed)
        scale = np.float32(network.spec.input_scale)
        start_python_episode(L, env, seed, scale)
        conn.send(("ok", None))
        if conn.recv()[0] != "go":
            return
        conn.send(("ok", python_env_loop(L, N, env, scale, python_env_step)))
    except (EOFError, ConnectionError, KeyboardInterrupt):   # the parent is gone
        return
    except Exception as exc:  # noqa: BLE001 - whatever failed, the parent reports it and stops the run
        try:
            conn.send(("error", describe_exception(exc)))
        except (OSError, ValueError, AttributeError):
            pass
    finally:
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - nothing is left to report it to
                pass
        if conn is not None:
            conn.close()
