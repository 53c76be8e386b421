"""Asynchronous training across nodes: the exchange scheme, without Ray (docs/distributed.md).

``--nodes N`` runs N *nodes*, each the Hogwild :class:`~numba_a3c.trainer.Trainer` of one machine
with ``threads`` threads on its own copy θₙ of the parameters, and one *parameter server* that
holds the global θ, the global step counter T, the target network θ⁻ and the shared RMSProp
statistics g. Every ``exchange_steps`` of its own steps (or ``exchange_seconds``), node n's
monitor thread exchanges, while its worker threads keep training::

    s  ← θₙ                         a snapshot of the node's parameters
    Δ  ← s − bₙ                      bₙ: the global θ the node received at its last exchange
    server:  θ ← θ + Δ;  T ← T + kₙ   kₙ: the node's steps since its last exchange
    node:    θₙ ← θₙ + (θ − s)        = θ + δ: the updates δ its threads made during the round
             bₙ ← θ                    trip are kept, and go out with the next Δ

Every update any thread of any node applies reaches the server exactly once, as part of one Δ,
and is added there; so the server's θ is the paper's Hogwild sum of updates, each computed on
parameters that miss at most the other nodes' last interval of updates (the staleness). The
shared statistics are statistics, not sums of updates: the server keeps each node's latest g and
returns their mean ḡ; the node folds it in the same way, gₙ ← max(gₙ + (ḡ − s_g), 0).

The global step: a node's counter C_T starts at the global T and counts its own steps; each reply
adds the others' steps (T_reply − T_known − kₙ) with an atomic add, so ε schedules, learning-rate
annealing, target refreshes (at global multiples of I_target, from the node's θₙ) and the budget
all follow the global T. A node's threads stop when its view of T reaches the budget.

Threads on a node (see trainer.py): the monitor thread runs :meth:`NodeTrainer.exchange` from
``on_tick``; θₙ, gₙ and C_T are written by the worker threads lock-free and by the exchange with
one lock-free elementwise add (:func:`fold_in`), the same race Hogwild has between threads.
:class:`ParameterServer` is plain single-threaded state: Ray runs its methods one at a time.
Nothing here imports Ray; :mod:`numba_a3c.ray_nodes` puts these parts on a cluster.
"""

import math
import time

import numpy as np

from numba_a3c.algorithms.state import (
    C_T,
    C_TARGET_NEXT,
    C_TARGET_UPDATES,
    TF_SIZE,
    TI_EPISODES,
    TI_SIZE,
    TI_STEPS,
    TI_UPDATES,
)
from numba_a3c.atomics import atomic_add
from numba_a3c.jit import njit
from numba_a3c.trainer import Trainer
from numba_a3c.validation import ConfigError

MAX_NODES = 1024
COUNTED = (TI_STEPS, TI_EPISODES, TI_UPDATES)   # thread_i columns that count up over a node's restarts


def check_nodes(config):
    """ConfigError for a node layout that cannot run: nodes 0..1024, intervals ≥ 0, one of them > 0,
    no observation, reward or value normalisation (their statistics are not exchanged)."""
    from numba_a3c.validation import _finite, _int_range

    _int_range("nodes", config.nodes, 0, MAX_NODES, " (0 trains in this process, without Ray)")
    _int_range("exchange_steps", config.exchange_steps, 0, 10**13, " (0: exchange by --exchange-seconds only)")
    _finite("exchange_seconds", config.exchange_seconds)
    if config.exchange_seconds < 0:
        raise ConfigError(f"--exchange-seconds {config.exchange_seconds:g}: must be ≥ 0 (0: by steps only)")
    if config.nodes and not (config.exchange_steps or config.exchange_seconds):
        raise ConfigError("--exchange-steps 0 and --exchange-seconds 0: the nodes would never exchange; give one "
                          "of them, e.g. --exchange-steps 1000")
    if config.nodes and (config.normalize_obs or config.normalize_reward):
        raise ConfigError("--normalize-obs and --normalize-reward do not run on --nodes yet (their statistics live in "
                          "one process): add --no-normalize-obs --no-normalize-reward")
    if config.nodes and config.normalize_value and config.algo == "a3c":
        raise ConfigError("--normalize-value does not run on --nodes yet (each node would rescale the value head by "
                          "statistics of its own): add --no-normalize-value")


def node_seed(seed, node, incarnation):
    """The seed of node ``node``'s ``incarnation``-th start (1 for the first): its threads' ε,
    exploration and environments differ from every other node's and from its earlier lives'."""
    return (seed + 1_000_003 * (node + 1) + 7_919 * (incarnation - 1)) % 2**32


# ---------------------------------------------------------------------------- kernels
@njit(nogil=True, cache=True, error_model="numpy")
def fold_in(theta, sent, received):
    """θₙ ← θₙ + (θ − s): the global parameters ``received`` replace the snapshot ``sent`` while the
    updates made to ``theta`` since the snapshot stay. One pass, in place, lock-free."""
    for i in range(theta.shape[0]):
        theta[i] += received[i] - sent[i]


@njit(nogil=True, cache=True, error_model="numpy")
def merge_statistics(g, sent, received):
    """gₙ ← max(gₙ + (ḡ − s_g), 0): the servers' mean statistics ``received`` replace the snapshot
    ``sent``; the node's later changes stay. g is a running mean of squares, so it stays ≥ 0."""
    zero = np.float32(0.0)
    for i in range(g.shape[0]):
        v = g[i] + (received[i] - sent[i])
        g[i] = v if v > zero else zero


@njit(nogil=True, cache=True)
def add_to_counter(counters, k, value):
    """``counters[k] += value`` atomically (the worker threads add to it at the same time)."""
    return atomic_add(counters, k, value)


def compile_exchange_kernels():
    """Compile (or load from the cache) the kernels above before any worker starts: the first
    exchange must not stall the monitor thread for seconds while the workers run on."""
    a = np.zeros(1, np.float32)
    fold_in(a, a, a)
    merge_statistics(a, a, a)
    add_to_counter(np.zeros(1, np.int64), 0, 0)


# ---------------------------------------------------------------------------- the parameter server
class ParameterServer:
    """The global state of a multi-node run: θ, θ⁻, T, g, and what the nodes reported.

    ``state`` is a dict of the run's starting point: ``theta``, ``theta_target``, ``g`` (the
    shared RMSProp statistics; empty with per-thread optimisers), ``T``, ``target_next``,
    ``target_updates``, ``thread_i`` and ``thread_f`` (``nodes × threads`` rows: node n's thread
    k is row n·threads + k). Every method is called by one caller at a time (a Ray actor runs its
    methods one after another); arrays passed in are copied or only read.
    """

    def __init__(self, config, state):
        self.nodes, self.threads = int(config.nodes), int(config.threads)
        self.algo = config.algo
        self.interval = int(config.target_interval)
        self.budget = int(config.steps)
        self.theta = np.array(state["theta"], np.float32)
        self.theta_target = np.array(state["theta_target"], np.float32)
        self.g = np.array(state["g"], np.float32)
        self.T = int(state["T"])
        self.target_next = int(state["target_next"])
        self.target_updates = int(state["target_updates"])
        rows = self.nodes * self.threads
        self.thread_i = np.zeros((rows, TI_SIZE), np.int64)
        self.thread_f = np.zeros((rows, TF_SIZE), np.float64)
        self.thread_i[:] = state["thread_i"]
        self.thread_f[:] = state["thread_f"]
        self.carried = self.thread_i[:, COUNTED].copy()   # counts of earlier lives and sessions
        self.node_g = {}                    # node → the statistics it sent last
        self.incarnations = [0] * self.nodes
        self.exchanges = 0
        self.new_episodes = []              # rows (T, thread, return, length) not yet polled
        self.stop = False
        self.pause_at = None

    def _rows(self, node):
        return slice(node * self.threads, (node + 1) * self.threads)

    def join(self, node):
        """Node ``node`` starts (or restarts after a fault): the global state it starts from."""
        self.incarnations[node] += 1
        if self.incarnations[node] > 1:     # a restart: its counts so far carry over
            self.carried[self._rows(node)] = self.thread_i[self._rows(node)][:, COUNTED]
        return dict(theta=self.theta, theta_target=self.theta_target, g=self.g, T=self.T,
                    target_next=self.target_next, target_updates=self.target_updates,
                    incarnation=self.incarnations[node], stop=self._stopping())

    def exchange(self, node, delta, steps, g, episodes, thread_i, thread_f):
        """Node ``node`` sends Δ (``delta``), its ``steps`` since its last exchange, its statistics
        ``g``, its new ``episodes`` (rows of its own Episodes log: T, thread, return, length, wall)
        and its thread rows; it gets back θ, the mean statistics ḡ, T and whether to stop."""
        self.theta += delta
        self.T += int(steps)
        if self.algo != "a3c" and self.T >= self.target_next:
            self.theta_target[:] = self.theta
            self.target_next = (self.T // self.interval + 1) * self.interval
            self.target_updates += 1
        if self.g.size:
            self.node_g[node] = np.array(g, np.float32)
            self.g = np.mean(list(self.node_g.values()), axis=0).astype(np.float32)
        rows = self._rows(node)
        self.thread_i[rows] = thread_i
        for j, column in enumerate(COUNTED):
            self.thread_i[rows, column] += self.carried[rows, j]
        self.thread_f[rows] = thread_f
        for T, k, ret, length, _ in np.asarray(episodes, np.float64).reshape(-1, 5).tolist():
            self.new_episodes.append((int(T), node * self.threads + int(k), ret, int(length)))
        self.exchanges += 1
        return dict(theta=self.theta, g=self.g, T=self.T, stop=self._stopping())

    def _stopping(self):
        return self.stop or (self.pause_at is not None and self.T >= self.pause_at)

    def request_stop(self, pause_at=None):
        """Tell every node to stop at its next exchange (now, or once T reaches ``pause_at``)."""
        if pause_at is None:
            self.stop = True
        else:
            self.pause_at = int(pause_at)

    def poll(self):
        """What the driver follows about 10 times a second: T, the episodes since the last poll,
        the thread rows, the number of exchanges and each node's starts."""
        episodes, self.new_episodes = self.new_episodes, []
        return dict(T=self.T, episodes=episodes, thread_i=self.thread_i, thread_f=self.thread_f,
                    exchanges=self.exchanges, incarnations=list(self.incarnations))

    def snapshot(self):
        """The global state a checkpoint holds."""
        return dict(theta=self.theta, theta_target=self.theta_target, g=self.g, T=self.T,
                    target_next=self.target_next, target_updates=self.target_updates)


# ---------------------------------------------------------------------------- a node
class NodeTrainer(Trainer):
    """One node: this machine's Hogwild trainer, exchanging with ``server`` from its monitor thread.

    ``server`` has the :class:`ParameterServer` methods ``join(node)`` and ``exchange(node, ...)``
    (the object itself, or a proxy of a Ray actor). The node joins when built: its θₙ, θ⁻, g and
    counter start from the global state and its seed from :func:`node_seed`. It writes no file and
    evaluates nothing; the driver does both from the server's state.

    Threads: as :class:`~numba_a3c.trainer.Trainer`; ``base``, ``T_known`` and the send marks
    belong to the monitor thread, which is the one that exchanges.
    """

    def __init__(self, config, node, server):
        compile_exchange_kernels()
        joined = server.join(node)
        local = config.replace(seed=node_seed(config.seed, node, joined["incarnation"]), eval_every=0, save_every=0)
        super().__init__(local, final_eval=False)
        self.node, self.server, self.incarnation = node, server, joined["incarnation"]
        sh = self.shared
        sh.theta[:] = joined["theta"]
        sh.theta_target[:] = joined["theta_target"]
        if sh.opt_shared.size:
            sh.opt_shared[:] = joined["g"]
        sh.counters[C_T] = joined["T"]
        sh.counters[C_TARGET_NEXT] = joined["target_next"]
        sh.counters[C_TARGET_UPDATES] = joined["target_updates"]
        self.base = np.array(joined["theta"], np.float32)   # bₙ: the global θ of the last exchange
        self.T_known = int(joined["T"])                      # the global T of the last exchange
        self.steps_sent = 0                                  # own steps reported so far
        self.rows_sent = 0                                   # own episode rows reported so far
        self.exchanges = 0
        self.exchange_seconds = 0.0                          # time spent in exchanges (round trips)
        self._next_time = time.monotonic() + (config.exchange_seconds or math.inf)
        if joined["stop"]:
            self.request_stop()

    def on_tick(self, steps, wall):
        super().on_tick(steps, wall)
        own = int(self.shared.thread_i[:, TI_STEPS].sum()) - self.steps_sent
        c = self.config
        if (c.exchange_steps and own >= c.exchange_steps) or time.monotonic() >= self._next_time:
            self.exchange()

    def exchange(self):
        """One exchange with the server (module docstring); the monitor thread calls it."""
        t0 = time.monotonic()
        sh = self.shared
        steps_now = int(sh.thread_i[:, TI_STEPS].sum())
        sent = sh.theta.copy()
        g_sent = sh.opt_shared.copy()
        episodes = self.episodes.rows.since(self.rows_sent)
        own = steps_now - self.steps_sent
        reply = self.server.exchange(self.node, sent - self.base, own, g_sent, episodes, sh.thread_i.copy(),
                                     sh.thread_f.copy())
        fold_in(sh.theta, sent, reply["theta"])
        if sh.opt_shared.size:
            merge_statistics(sh.opt_shared, g_sent, reply["g"])
        add_to_counter(sh.counters, C_T, int(reply["T"]) - self.T_known - own)
        self.T_known, self.steps_sent = int(reply["T"]), steps_now
        self.base = np.array(reply["theta"], np.float32)
        self.rows_sent += len(episodes)
        self.episodes.rows.discard_head(0, self.rows_sent)   # the server has them now
        self.exchanges += 1
        self.exchange_seconds += time.monotonic() - t0
        self._next_time = time.monotonic() + (self.config.exchange_seconds or math.inf)
        if reply["stop"]:
            self.request_stop()

    def run(self, stop_at=None):
        """Train until the global budget (or a stop), then send what is left, unless θₙ diverged."""
        result = super().run(stop_at)
        if result.status != "diverged" and np.isfinite(self.shared.theta).all():
            self.exchange()
        return result

