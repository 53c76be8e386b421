"""``--nodes N`` on Ray: the node actors, the parameter server actor and the driver (docs/distributed.md).

Importing this module imports Ray (the optional extra ``ray``); :func:`numba_a3c.distributed.require_ray`
says which extra to install when it is missing. The scheme itself, and everything that can be
tested without Ray, is in :mod:`numba_a3c.distributed`.

* The parameter server: :class:`~numba_a3c.distributed.ParameterServer` as a Ray actor (no CPU
  reserved; it only adds arrays).
* :class:`NodeActor`: one per node, reserving ``threads`` CPUs and spread over the cluster's
  machines; its ``run`` builds a :class:`~numba_a3c.distributed.NodeTrainer` and trains. Ray
  restarts an actor whose process dies (up to ``MAX_RESTARTS`` times); the driver then calls
  ``run`` again and the new process joins from the global state.
* :class:`DistributedTrainer`: the driver, with the :class:`~numba_a3c.trainer.Trainer`'s interface
  (``run``, ``request_stop``, ``shared``, ``run_dir``…) so that ``asyncrl train`` and
  :func:`numba_a3c.train` use it unchanged. Its ``shared`` is a mirror of the server's state in the
  checkpoint layout (``nodes × threads`` thread rows), refreshed before every save and evaluation.

Threads and processes: the driver's thread that calls ``run`` owns everything here but
``stops.requested`` (any thread or a signal handler may set it, :meth:`request_stop`) and the
evaluation thread's part (as in Trainer). Each node actor runs ``run`` in one Ray thread and
``request_stop`` in a second (``max_concurrency=2``).
"""

import math
import os
import socket
import time

import numpy as np
import ray

from numba_a3c.algorithms.state import (
    BUDGET_DONE,
    C_STOP,
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    DIVERGED,
    ERROR,
    STOPPED,
    TI_EPISODES,
    TI_STEPS,
)
from numba_a3c.distributed import NodeTrainer, ParameterServer, check_nodes
from numba_a3c.episode_log import FLUSH_SECONDS
from numba_a3c.outcome import decide_outcome
from numba_a3c.progress import progress_report
from numba_a3c.run_files import next_multiple
from numba_a3c.trainer import RESUMABLE_CHANGES, SAVE_SECONDS, Trainer
from numba_a3c.validation import ConfigError
from numba_a3c.workers import describe_exception, new_shared_state

MAX_RESTARTS = 8          # times Ray restarts one node actor whose process died
TICK = 0.1                # seconds between the driver's polls of the server
NODE_END_TIMEOUT = 60.0   # seconds the nodes get to stop and send their last changes once asked
CONNECT_TIMEOUT = 5.0     # seconds to wait for a TCP answer from --ray-address


class ServerProxy:
    """The server's ``join`` and ``exchange`` as blocking calls on its actor handle (inside a node)."""

    def __init__(self, handle):
        self.handle = handle

    def join(self, node):
        return ray.get(self.handle.join.remote(node))

    def exchange(self, node, *args):
        return ray.get(self.handle.exchange.remote(node, *args))


class NodeActor:
    """One node of the run: ``run()`` trains this machine's threads until the global budget or a stop."""

    def __init__(self, config, node, server_name):
        # The server is found by name: an actor handle among the arguments would keep them in the
        # object store, which Ray warns makes a restart fragile.
        self.config, self.node, self.server_name = config, node, server_name
        self.trainer = None

    def run(self):
        """Join, train, send the last changes; a dict of what happened (status, error, steps, exchanges…)."""
        server = ray.get_actor(self.server_name)
        self.trainer = NodeTrainer(self.config, self.node, ServerProxy(server))
        result = self.trainer.run()
        tr = self.trainer
        return dict(node=self.node, status=result.status, error=result.error, incarnation=tr.incarnation,
                    steps=int(tr.shared.thread_i[:, TI_STEPS].sum()), exchanges=tr.exchanges,
                    exchange_seconds=tr.exchange_seconds, host=socket.gethostname(), pid=os.getpid())

    def request_stop(self):
        if self.trainer is not None:
            self.trainer.request_stop()

    def pid(self):
        return os.getpid()


def check_address(address):
    """ConfigError unless something answers at ``address`` (HOST:PORT of a Ray head; "auto" is Ray's)."""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: give HOST:PORT, the address 'ray start --head' printed "
                          f"(e.g. 10.0.0.1:6379), or leave it out to start Ray on this machine")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the "
                          f"cluster with 'ray start --head' and give the address it prints") from None


def connect(address, cpus_needed):
    """Join the cluster at ``address``, or start Ray on this machine (at least ``cpus_needed`` CPUs).
    True when this call connected (False: the caller's process was connected to Ray already)."""
    if ray.is_initialized():
        return False
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - any failure to reach or start Ray is one line
        raise ConfigError(f"could not {'join the Ray cluster at ' + address if address else 'start Ray'}: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


class DistributedTrainer(Trainer):
    """A multi-node run, driven from this process (see the module docstring and docs/distributed.md).

    Same interface and files as :class:`~numba_a3c.trainer.Trainer`; ``ray_address`` names a
    running cluster (None: start Ray here). :meth:`connect` reaches Ray (the CLI calls it while it
    checks the inputs, so that a bad address is refused before anything is created); ``run``
    starts the actors and ends them, and disconnects.
    """

    resumable_changes = RESUMABLE_CHANGES + ("nodes", "threads", "exchange_steps", "exchange_seconds")

    def __init__(self, config, ray_address=None, run_dir=None, on_progress=None, on_eval=None, final_eval=True,
                 parts=None, save_seconds=SAVE_SECONDS):
        check_nodes(config)
        if config.nodes < 1:
            raise ConfigError("a multi-node run needs --nodes 1 or more")
        super().__init__(config, on_progress=on_progress, on_eval=on_eval, final_eval=final_eval, run_dir=run_dir,
                         parts=parts, save_seconds=save_seconds)
        self.ray_address = ray_address
        self.shared = mirror_state(config, self.network, self.shared.theta)
        self._reset_parts()
        self.node_results = {}    # node → the dict its last run returned
        self.lost_calls = {}      # node → its run calls that failed because its process had died
        self.exchanges = 0
        self.nodes = []           # the node actors' handles while a session runs
        self.incarnations = [0] * config.nodes   # each node's starts (0: not scheduled yet)
        self._connected_here = False             # this trainer connected to Ray (and disconnects at the end)

    @property
    def restarts(self):
        """Node processes Ray restarted after they died (each restart rejoined the run)."""
        return sum(max(0, k - 1) for k in self.incarnations)

    def _reset_parts(self):
        from numba_a3c.episodes import Episodes
        from numba_a3c.monitor import StopReasons

        self.episodes = Episodes(self.shared.n_threads)
        self.stops = StopReasons(self.shared.counters)

    def restore(self, ckpt):
        """The global state of a checkpoint (of this run or of any earlier layout, single-node
        included): θ, θ⁻, the shared statistics, the counters, the logs. Per-thread state (RNGs,
        environments, per-thread optimiser statistics) starts fresh on every node."""
        sh = self.shared
        if not (np.isfinite(ckpt.theta).all() and np.isfinite(ckpt.opt_shared).all()):
            raise ValueError("the checkpoint holds NaN or Inf parameters (a diverged state, e.g. diverged.h5); "
                             "resume from latest.h5 or best.h5 instead")
        sh.theta[:] = ckpt.theta
        if ckpt.theta_target is not None:
            sh.theta_target[:] = ckpt.theta_target
        if ckpt.opt_shared.shape == sh.opt_shared.shape:
            sh.opt_shared[:] = ckpt.opt_shared
        for k in (C_T, C_TARGET_NEXT, C_TARGET_UPDATES):
            sh.counters[k] = ckpt.counters[k]
        counts = np.zeros(sh.n_threads, np.int64)
        counts[0] = int(ckpt.thread_i[:, TI_EPISODES].sum())
        sh.thread_i[:, TI_EPISODES] = counts
        self.episodes.restore(ckpt.episodes, int(ckpt.attrs.get("log_first_row", 0)), counts)
        self.evals.restore(ckpt.evaluations)
        self.clock.before = ckpt.wall_time

    def connect(self):
        """Reach Ray (ConfigError with one line when it cannot)."""
        if connect(self.ray_address, self.config.nodes * self.config.threads):
            self._connected_here = True

    # ------------------------------------------------------------------ the run
    def run(self, stop_at=None):
        self.connect()
        actors = []
        try:
            return self._run(stop_at, actors)
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            if self._connected_here:   # a caller's own connection to Ray is left as it was
                ray.shutdown()

    def _start(self, actors):
        c, sh = self.config, self.shared
        state = dict(theta=sh.theta, theta_target=sh.theta_target, g=sh.opt_shared, T=int(sh.counters[C_T]),
                     target_next=int(sh.counters[C_TARGET_NEXT]), target_updates=int(sh.counters[C_TARGET_UPDATES]),
                     thread_i=sh.thread_i, thread_f=sh.thread_f)
        name = f"asyncrl-parameter-server-{os.getpid()}-{time.time_ns()}"
        server = ray.remote(num_cpus=0)(ParameterServer).options(name=name).remote(c, state)
        actors.append(server)
        node_actor = ray.remote(NodeActor)
        nodes = [node_actor.options(name=f"{name}-node-{n}", num_cpus=c.threads, max_restarts=MAX_RESTARTS,
                                    max_concurrency=2, scheduling_strategy="SPREAD").remote(c, n, name)
                 for n in range(c.nodes)]
        self.nodes = nodes
        actors.extend(nodes)
        return server, nodes

    def _run(self, stop_at, actors):
        server, nodes = self._start(actors)
        if stop_at is not None:
            server.request_stop.remote(pause_at=stop_at)
        pending = {nodes[n].run.remote(): n for n in range(len(nodes))}
        self.stops.begin(stop_at)
        self.evals.open()
        self.clock.start()
        T0 = int(self.shared.counters[C_T])
        self.files.schedule(T0)
        timers = dict(log=time.monotonic() + self.config.log_interval, flush=time.monotonic() + FLUSH_SECONDS,
                      eval=next_multiple(T0, self.config.eval_every), told=None)
        errors = []
        while pending:
            try:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=TICK)
                for ref in ready:
                    self._node_ended(ref, pending, nodes, errors)
                self._tick(server, T0, timers)
                self._drop_unscheduled(pending, nodes)
                if self.stops.requested or self.shared.counters[C_STOP]:
                    timers["told"] = timers["told"] or self._tell_stop(server, nodes)
                    if time.monotonic() - timers["told"] > NODE_END_TIMEOUT:
                        errors.append(f"node(s) {', '.join(str(n) for n in sorted(pending.values()))} did not "
                                      f"stop within {NODE_END_TIMEOUT:g} s; their last changes are lost")
                        break
            except KeyboardInterrupt:   # only where the CLI's handlers are not installed
                self.stops.request()
        elapsed = self.clock.elapsed()
        self._pull(server)
        self._poll(server)
        wall = self.clock.before + elapsed
        self.stops.check_theta(self.shared.theta)
        self.evals.finish(wait=not (self.stops.requested or errors), stop_requested=lambda: self.stops.requested)
        self.stops.note(self.evals.failure())
        self.clock.stop(elapsed)
        outcome = self._outcome(errors, stop_at)
        T = int(self.shared.counters[C_T])
        final = None
        if self.final_eval and outcome.runs_final_eval:
            final, problem = self.evals.final(self.shared.theta.copy(), T, wall, self.stops)
            outcome = outcome.with_problem(problem)
        self.evals.close()
        outcome = self._save_at_end(outcome, at_rest=False)
        return self._result(outcome, wall, (T - T0) / elapsed if elapsed > 0 else 0.0, final)

    def _node_ended(self, ref, pending, nodes, errors):
        """A node's ``run`` returned or its process died: record it, or run it again once Ray restarted it."""
        n = pending.pop(ref)
        try:
            self.node_results[n] = res = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            if self.stops.requested or self.shared.counters[C_STOP]:
                return
            # A call sent while Ray still saw the dead process fails the same way: each node gets
            # a few failed calls per restart Ray grants it before the run gives up on it.
            self.lost_calls[n] = self.lost_calls.get(n, 0) + 1
            if self.lost_calls[n] > 4 * MAX_RESTARTS:
                errors.append(f"node {n} died and was not restarted: {str(exc).splitlines()[0]}")
                self.stops.stop_workers()
                return
            time.sleep(0.2)
            pending[nodes[n].run.remote()] = n   # Ray restarts the actor; the new process rejoins
            return
        except ray.exceptions.RayTaskError as exc:
            errors.append(f"node {n} failed: {describe_exception(exc.as_instanceof_cause())}")
            self.stops.stop_workers()
            return
        if res["status"] in ("failed", "diverged"):
            if res["status"] == "diverged":
                self.stops.diverge(f"node {n}: {res['error']}")
            else:
                errors.append(f"node {n} failed: {res['error']}")
            self.stops.stop_workers()

    def _drop_unscheduled(self, pending, nodes):
        """Once the run is ending (budget spent, or a stop), a node that never joined (Ray found no
        machine with ``threads`` free CPUs for it) is cancelled instead of waited for."""
        ending = self.shared.counters[C_T] >= self.config.steps or self.stops.requested
        if not ending:
            return
        for ref, n in list(pending.items()):
            if self.incarnations[n] == 0:
                ray.kill(nodes[n], no_restart=True)
                del pending[ref]
                self.node_results[n] = dict(node=n, status="not started", error="", incarnation=0)

    def _tell_stop(self, server, nodes):
        server.request_stop.remote()
        for node in nodes:
            node.request_stop.remote()
        return time.monotonic()

    def _outcome(self, errors, stop_at):
        statuses = [r["status"] for r in self.node_results.values()]
        T = int(self.shared.counters[C_T])
        if self.stops.divergence:
            code = DIVERGED
        elif errors:
            code = ERROR
        elif stop_at is not None and T >= stop_at and T < self.config.steps and not self.stops.requested:
            code = STOPPED
        elif T >= self.config.steps and all(s in ("finished", "not started") for s in statuses):
            code = BUDGET_DONE
        else:
            code = STOPPED
        return decide_outcome(code, "; ".join(errors), self.stops.fault, self.stops.divergence,
                              stop_requested=self.stops.requested)

    def _poll(self, server):
        """Follow the server: T, thread rows, new episodes (stamped with the driver's wall time)."""
        p = ray.get(server.poll.remote())
        sh = self.shared
        sh.counters[C_T] = p["T"]
        sh.thread_i[:] = p["thread_i"]
        sh.thread_f[:] = p["thread_f"]
        self.exchanges = p["exchanges"]
        self.incarnations = p["incarnations"]
        wall = self.clock.wall()
        ep = self.episodes
        for T, k, ret, length in p["episodes"]:
            ep.rows.append((T, k, ret, length, wall))
            ep.recent.append(ret)
            if math.isfinite(ret):
                ep.max_abs_return = max(ep.max_abs_return, abs(ret))
                ep.seen += 1
            elif not self.stops.divergence:
                self.stops.diverge(f"thread {k}'s episode ending at step {T:,} returned {ret}")
        return p["T"]

    def _pull(self, server):
        """Copy the server's θ, θ⁻, statistics and target counters into the mirror (before a save or evaluation)."""
        s = ray.get(server.snapshot.remote())
        sh = self.shared
        sh.theta[:] = s["theta"]
        sh.theta_target[:] = s["theta_target"]
        sh.opt_shared[:] = s["g"]
        sh.counters[C_TARGET_NEXT] = s["target_next"]
        sh.counters[C_TARGET_UPDATES] = s["target_updates"]

    def _tick(self, server, T0, timers):
        """One pass of the driver's loop: progress, episodes.csv, evaluations and saves, as the monitor's."""
        now = time.monotonic()
        T = self._poll(server)
        wall = self.clock.wall(now)
        if now >= timers["flush"]:
            try:
                self.flush_episodes()
            except OSError as exc:
                self.stops.fail(f"could not append to {self.run_dir / 'episodes.csv'}: {exc}")
            timers["flush"] = now + FLUSH_SECONDS
        self.stops.note(self.evals.failure())
        if self.stops.requested or self.shared.counters[C_STOP]:
            return
        eval_due = timers["eval"] and T >= timers["eval"] and T < self.config.steps and not self.evals.running()
        if eval_due or self.files.save_due(T):
            self._pull(server)
        if eval_due:
            self.evals.start(self.shared.theta.copy(), T, wall, on_failure=self.stops.stop_workers)
            timers["eval"] = next_multiple(T, self.config.eval_every)
        if now >= timers["log"] and self.on_progress is not None:
            self.on_progress(progress_report(self.shared, self.config, self.episodes.recent, now - self.clock.t0, T0))
            timers["log"] = now + self.config.log_interval
        self.on_tick(T, wall)


def mirror_state(config, network, theta):
    """The driver's copy of the global state, in the checkpoint's layout: ``nodes × threads``
    thread rows; no per-thread optimiser statistics (they stay on the nodes)."""
    state = new_shared_state(config.replace(threads=config.nodes * config.threads), network, theta)
    state.opt_private = np.zeros((state.n_threads, 0), np.float32)
    return state
