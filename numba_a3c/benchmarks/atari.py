"""Atari throughput: agent steps per second, where the time of a step goes, and resident memory.

Three measurements (``asyncrl bench atari``):

1. **Emulator scaling.** N Python threads, each owning its own game, step it with random actions
   for ``seconds``. Two ways of running the game are compared:

   * ``vector``: :class:`numba_a3c.envs.atari.AtariEnv`, the one training uses
     (``AtariVectorEnv(num_envs=1, num_threads=1)``: emulator + DeepMind preprocessing in C++,
     GIL released while it steps);
   * ``ale``: a plain ``ale_py.ALEInterface`` doing 4 ``act`` calls and one greyscale screen copy
     per agent step (the emulator alone, no resize or stack; its bindings hold the GIL).

   ``speed-up(N) = steps/s with N threads ÷ steps/s with 1``: close to N (up to the number of
   cores) when the threads really run in parallel, about 1 when a lock serialises them.

2. **Training throughput.** The real worker threads (:class:`numba_a3c.workers.Workers`, the
   same objects ``asyncrl train`` starts) run ``algo`` with the Atari preset on ``env_id``;
   after ``warmup`` seconds the global step counter T is read twice, ``seconds`` apart::

       steps/s = (T₁ − T₀) / (t₁ − t₀)       (agent steps summed over threads; 1 step = 4 frames)

   The process's resident memory (VmRSS) is read at the end of each run, with every thread's
   environment, network buffers and the shared parameters alive.

3. **Where a step's time goes**, in ONE thread, by timing each call of the training loop
   separately (``time.perf_counter`` around each; the loop is the worker's, unrolled)::

       emulator+preprocessing   env.step (4 frames, max-pool, 84×84 greyscale, stack; C++)
       to float32               flat_observation (uint8 → float32 × 1/255)
       forward + action         act: the forward pass of s_n and the policy's choice
       record step              observe: reward clip, counters, episode log
       sync θ′ ← θ              begin_segment (near 0: only a thread's first segment copies θ;
                                after that the update's own pass writes θ′)
       backward                 end_segment minus update: targets, loss gradient, backprop
       update                   apply_gradients alone (norm, then one pass: clip, shared RMSProp
                                on all θ, θ′ ← θ, dθ ← 0), timed on a separate copy of the state
                                so training is not disturbed

   Per-segment costs are divided by the steps of the segment. The sum is the time of one agent
   step in one thread; its inverse is the single-thread rate that the pieces explain.

4. **The GIL's share**, during each training window with fewer threads than cores: a
   :class:`GilProbe` thread estimates the share g of time some worker holds the GIL; g / (steps/s)
   is the GIL-held time of an agent step, whose inverse would bound the rate of any number of
   threads in one process. The probe is checked first against threads whose share is known
   (:meth:`GilProbe.check`, :data:`GIL_CHECKS`), and both numbers are printed: an estimate, not
   a measurement. It sees holds longer than its threshold and misses shorter ones; and a wake-up
   that waits for a CPU (the emulator's own thread on a busy core) reads as one that waits for
   the GIL.
"""

import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from numba_a3c.algorithms.learner import act, apply_gradients, begin_segment, end_segment, observe
from numba_a3c.algorithms.state import C_STOP, C_T, TI_EPISODE_OVER, TI_N
from numba_a3c.benchmarks.report import cores, resident_mib
from numba_a3c.build import build_run
from numba_a3c.config import resolve
from numba_a3c.envs.atari import FRAME_SKIP, make_atari_env, rom_for
from numba_a3c.envs.base import flat_observation
from numba_a3c.workers import Workers, compile_kernels, make_learner

#: Issue 4's target: the paper's whole-machine rate (80M agent steps in a day on 16 cores).
TARGET_STEPS_PER_S = 926
#: Issue 4's memory target for 16 Atari threads.
TARGET_RSS_MB_16_THREADS = 1536
#: An endless budget: measurements end by the stop flag.
ENDLESS = 10**15


# ----------------------------------------------------------------------------- 1. emulator scaling
def _vector_stepper(env_id, seed):
    env = make_atari_env(env_id, seed=seed)
    env.reset(seed=seed)
    n = env.n_actions

    def step(a):
        _, _, term, trunc, _ = env.step(a % n)
        if term or trunc:
            env.reset()

    return step, env.close


def _ale_stepper(env_id, seed):
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", int(seed))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(rom_for(env_id)))
    actions = ale.getMinimalActionSet()
    screen = np.zeros(ale.getScreenDims(), np.uint8)

    def step(a):
        action = actions[a % len(actions)]
        for _ in range(FRAME_SKIP):
            ale.act(action)
        ale.getScreenGrayscale(screen)
        if ale.game_over():
            ale.reset_game()

    return step, (lambda: None)


def emulator_rate(env_id, threads, seconds, kind="vector"):
    """(agent steps/s summed over ``threads`` threads each stepping its own game with random actions,
    cores used = process CPU seconds per wall second). A GIL-bound emulator stays near one core
    whatever the thread count; one that releases the GIL uses up to ``threads`` cores."""
    make = _vector_stepper if kind == "vector" else _ale_stepper
    steppers = [make(env_id, 100 + k) for k in range(threads)]
    counts = [0] * threads
    go = threading.Event()
    stop = threading.Event()

    def loop(k):
        step = steppers[k][0]
        acts = np.random.default_rng(k).integers(0, 18, 4096)
        go.wait()
        i = 0
        while not stop.is_set():
            step(int(acts[i & 4095]))
            i += 1
        counts[k] = i

    ts = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    t0, c0 = time.perf_counter(), time.process_time()
    go.set()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    for _, close in steppers:
        close()
    return sum(counts) / dt, cpu / dt


# ----------------------------------------------------------------------------- 2. training throughput
def _setup(env_id, algo, threads, seed=0):
    """The run's parts (:func:`numba_a3c.build.build_run`) with the Atari preset and an endless budget."""
    return build_run(resolve({"env": env_id, "algo": algo, "threads": threads, "steps": ENDLESS, "eval_every": 0,
                              "save_every": 0, "seed": seed}))


class GilProbe:
    """Samples how often the GIL is held by someone else, from a thread of its own.

    The probe sleeps ``PERIOD`` seconds (releasing the GIL), and on waking must take the GIL back
    before its next line runs. When nobody holds it the wake-up is prompt; when a worker holds it
    (running Python between its nopython kernels and emulator calls) the probe waits for it. The
    share of wake-ups later than the quiet machine's late tail (``threshold_s``, measured first
    with no worker running) estimates the share of time the GIL is held, g. Then

        GIL-held time per agent step ≈ g / (steps/s),   and   steps/s ≤ 1 / (GIL-held time per step)

    however many cores there are: the bound Python places on N threads. The probe needs a core
    of its own to be right (a probe waiting for a CPU looks like one waiting for the GIL), so the
    estimate is only meaningful with fewer busy threads than cores.
    """

    PERIOD = 2e-4

    def __init__(self, threshold_s):
        self.threshold_s = threshold_s
        self.samples = self.late = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gil-probe", daemon=True)

    @staticmethod
    def _wake_up_delay():
        """Sleep ``PERIOD`` and return how much later than that this thread ran again (seconds)."""
        t0 = time.perf_counter()
        time.sleep(GilProbe.PERIOD)
        return time.perf_counter() - t0 - GilProbe.PERIOD

    @staticmethod
    def calibrate(seconds=0.5, quantile=0.99):
        """The ``quantile`` of the probe's wake-up delays with nothing else running (seconds)."""
        delays = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            delays.append(GilProbe._wake_up_delay())
        return float(np.quantile(delays, quantile))

    def _run(self):
        while not self._stop.is_set():
            late = self._wake_up_delay() > self.threshold_s
            self.samples += 1
            self.late += late

    def start(self):
        self._thread.start()

    @staticmethod
    def check(threshold_s, hold_s=5e-4, release_s=1e-3, seconds=1.0):
        """``(true share, probe's share)`` for a thread whose GIL share is known.

        A Python thread spins ``hold_s`` (holding the GIL), sleeps ``release_s`` (releasing it),
        and times its own spins: their sum over the window is the true share. The probe runs beside
        it as during training. The two numbers side by side say how far to trust the probe on this
        machine, now. On an idle machine it reads holds longer than its threshold about right and
        misses most of the shorter ones (those of 50 µs when its threshold is 120 µs: README,
        "Re-measured with today's code"). On a loaded machine it is off either way: a wake-up
        that waits for a CPU looks like one that waits for the GIL, and the threshold calibrated
        under load is so long (3 ms on the 2-core machine with a training beside it) that the
        holder's 0.5 ms spins go unseen (a thread holding the GIL 29 % of the time read as 2 %).
        """
        stop, held = threading.Event(), [0.0]

        def holder():
            while not stop.is_set():
                t0 = now = time.perf_counter()
                while now - t0 < hold_s:
                    now = time.perf_counter()
                held[0] += now - t0
                time.sleep(release_s)

        thread = threading.Thread(target=holder, name="gil-holder", daemon=True)
        probe = GilProbe(threshold_s)
        thread.start()
        t0 = time.perf_counter()
        probe.start()
        time.sleep(seconds)
        share = probe.stop()
        stop.set()
        thread.join()
        return held[0] / (time.perf_counter() - t0), share

    def stop(self):
        """Stop; the share of late wake-ups (g), or None without samples."""
        self._stop.set()
        self._thread.join()
        return self.late / self.samples if self.samples else None


#: (hold µs, release µs) of the threads the probe is checked against before training: long holds,
#: which it sees, and short ones like the Python between a worker's kernels, which it mostly misses
#: when the threshold (the quiet wake-up's late tail) is longer than they are.
GIL_CHECKS = ((500, 1000), (50, 200))


def training_rate(env_id, algo, threads, seconds, warmup, gil_threshold_s=None):
    """(steps/s, RSS MiB at the end, cores busy, GIL share or None) of the real worker threads with
    the Atari preset.

    Cores busy = process CPU seconds per wall second over the window. CPU ms per step =
    cores busy / steps/s: if it stays flat from 1 to N threads, the threads add no work of their
    own (no lock spinning, little cache contention) and N threads on N idle cores run N× faster.
    With ``gil_threshold_s`` a :class:`GilProbe` runs during the window.
    """
    parts = _setup(env_id, algo, threads)
    compile_kernels(parts.config, parts.network, parts.env_info)
    shared = parts.initial_state()
    workers = Workers(shared, parts.network, parts.env_info, parts.config)
    workers.reset_environments()
    workers.start()
    probe = None if gil_threshold_s is None else GilProbe(gil_threshold_s)
    try:
        time.sleep(warmup)
        t0, c0, T0 = time.perf_counter(), time.process_time(), int(shared.counters[C_T])
        if probe:
            probe.start()
        time.sleep(seconds)
        gil = probe.stop() if probe else None
        t1, c1, T1 = time.perf_counter(), time.process_time(), int(shared.counters[C_T])
        memory = resident_mib()
    finally:
        shared.counters[C_STOP] = 1
        workers.join(60)
        workers.close()
    if workers.errors:
        k, exc = workers.errors[0]
        raise RuntimeError(f"worker thread {k} failed: {type(exc).__name__}: {exc}")
    return (T1 - T0) / (t1 - t0), memory, (c1 - c0) / (t1 - t0), gil


# ----------------------------------------------------------------------------- 3. per-piece breakdown
PIECES = ("emulator+preprocessing", "to float32", "forward + action", "record step", "sync θ′ ← θ",
          "backward", "update")


def step_breakdown(env_id, algo, steps, seed=0):
    """Per agent step, each piece of the training loop in one thread: wall ms and CPU ms.

    Runs ``steps`` agent steps of real training (the worker loop of
    :meth:`numba_a3c.workers.Workers._run_python`, unrolled so each call is timed alone). Wall
    time is ``time.perf_counter``; CPU time is ``time.process_time``, the CPU of the whole process
    (so the emulator's own C++ thread is counted in "emulator+preprocessing"). On a busy machine
    wall time includes waiting for a core; CPU time does not, and its sum predicts the rate of one
    thread on an idle core.
    Returns ``({piece: wall ms}, {piece: cpu ms}, steps, segments)``.
    """
    parts = _setup(env_id, algo, 1, seed)
    config, network = parts.config, parts.network
    compile_kernels(config, network, parts.env_info)
    shared = parts.initial_state()
    L = make_learner(shared, network, 0)
    spare = make_learner(parts.initial_state(), network, 0)   # for timing the update alone
    env = make_atari_env(env_id, seed=seed)
    scale = np.float32(network.spec.input_scale)
    obs, _ = env.reset(seed=seed)
    flat_observation(obs, scale, L.obs[0])
    wall = dict.fromkeys(PIECES, 0.0)
    cpu = dict.fromkeys(PIECES, 0.0)
    end_piece = "backward"       # end_segment's whole time, the update is subtracted below
    pc, pt = time.perf_counter, time.process_time

    def mark():
        return pc(), pt()

    def add(piece, a, b):
        wall[piece] += b[0] - a[0]
        cpu[piece] += b[1] - a[1]

    done_steps = segments = 0
    while done_steps < steps:
        m0 = mark()
        begin_segment(L)
        add("sync θ′ ← θ", m0, mark())
        while True:
            m0 = mark()
            a = act(L)
            m1 = mark()
            obs, r, term, trunc, inf = env.step(int(a))
            m2 = mark()
            flat_observation(obs, scale, L.obs[L.thread_i[TI_N] + 1])
            m3 = mark()
            over = observe(L, float(r), bool(term) or inf["life_lost"], bool(trunc), bool(term or trunc))
            m4 = mark()
            add("forward + action", m0, m1)
            add("emulator+preprocessing", m1, m2)
            add("to float32", m2, m3)
            add("record step", m3, m4)
            done_steps += 1
            if over:
                break
        m0 = mark()
        end_segment(L)
        add(end_piece, m0, mark())
        segments += 1
        m0 = mark()
        apply_gradients(spare)
        add("update", m0, mark())
        if L.thread_i[TI_EPISODE_OVER]:
            obs, _ = env.reset()
            flat_observation(obs, scale, L.obs[0])
            L.thread_i[TI_EPISODE_OVER] = 0
    env.close()
    for d in (wall, cpu):
        d[end_piece] = max(0.0, d[end_piece] - d["update"])
    per_step = 1000.0 / done_steps
    return ({k: v * per_step for k, v in wall.items()}, {k: v * per_step for k, v in cpu.items()},
            done_steps, segments)


def in_worker_thread(fn, *args):
    """``fn(*args)`` run in a thread of its own, as training's workers run, and its result.

    The breakdown is timed where training runs: on a 16-core machine, timed in the main thread
    with OpenBLAS's default 16 threads, the backward pass took 3.9 ms a step against 0.40 ms with
    ``OPENBLAS_NUM_THREADS=1``, while training (in worker threads) was no slower with 16 than with 1."""
    out = {}

    def target():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread below)
            out["error"] = exc

    thread = threading.Thread(target=target, name="breakdown")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


# ----------------------------------------------------------------------------- the whole benchmark
@dataclass
class AtariBenchmark:
    env_id: str
    algo: str
    emulator: dict = field(default_factory=dict)     # kind -> {threads: steps/s}
    emulator_cores: dict = field(default_factory=dict)   # kind -> {threads: cores used}
    training: dict = field(default_factory=dict)     # threads -> steps/s

    def training_vs_emulator(self):
        """{threads: training rate / the vector emulator's rate alone with as many threads}: how far
        training is from the floor set by the emulator (1.0 would be learning for free)."""
        floor = self.emulator.get("vector", {})
        return {n: rate / floor[n] for n, rate in self.training.items() if floor.get(n)}

    training_cores: dict = field(default_factory=dict)   # threads -> cores busy
    memory_mb: dict = field(default_factory=dict)    # threads -> RSS MiB
    breakdown_ms: dict = field(default_factory=dict)        # piece -> wall ms per agent step
    breakdown_cpu_ms: dict = field(default_factory=dict)    # piece -> CPU ms per agent step
    breakdown_steps: int = 0
    gil_share: dict = field(default_factory=dict)       # threads -> share of time the GIL was held (GilProbe)
    gil_check: dict = field(default_factory=dict)       # hold µs -> {"true": share, "probe": its reading}

    def to_dict(self):
        return dict(asdict(self), training_vs_emulator=self.training_vs_emulator())


def run(env_id="ALE/Pong-v5", algo="a3c", threads=(1, 2, 16), seconds=20.0, warmup=5.0, emulator_seconds=5.0,
        emulator_threads=(1, 2), breakdown_steps=2000, on_line=print):
    """Run the three measurements; ``on_line`` receives each result line as it is known."""
    res = AtariBenchmark(env_id, algo)
    for kind in ("vector", "ale"):
        res.emulator[kind], res.emulator_cores[kind] = {}, {}
        for n in emulator_threads:
            rate, used = emulator_rate(env_id, n, emulator_seconds, kind)
            res.emulator[kind][n], res.emulator_cores[kind][n] = rate, used
            one = res.emulator[kind][emulator_threads[0]]
            on_line(f"emulator only  {kind:6s}  {n:2d} thread(s): {rate:8.0f} agent steps/s"
                    f"  (x{rate / one:.2f} of {emulator_threads[0]}), {used:.2f} cores busy, "
                    f"{1000 * used / max(rate, 1e-9):.3f} CPU ms/step")
    if breakdown_steps:
        ms, cpu, done, segs = in_worker_thread(step_breakdown, env_id, algo, breakdown_steps)
        res.breakdown_ms, res.breakdown_cpu_ms, res.breakdown_steps = ms, cpu, done
        total, total_cpu = sum(ms.values()), sum(cpu.values())
        on_line(f"one thread, {done} agent steps of {algo} in {segs} segments, per agent step:")
        on_line(f"  {'piece':24s} {'wall ms':>8s} {'share':>6s} {'CPU ms':>8s} {'share':>6s}")
        for k in PIECES:
            on_line(f"  {k:24s} {ms[k]:8.3f} {100 * ms[k] / total:5.1f}% {cpu[k]:8.3f} "
                    f"{100 * cpu[k] / max(total_cpu, 1e-12):5.1f}%")
        on_line(f"  {'total':24s} {total:8.3f} {'':6s} {total_cpu:8.3f}   -> {1000 / total:.0f} agent steps/s "
                f"in one thread ({1000 / max(total_cpu, 1e-12):.0f} on an idle core, from CPU time)")
    probed = {n for n in threads if n < cores()}     # the probe needs a core of its own
    threshold = GilProbe.calibrate() if probed else None
    if probed:
        for hold_us, release_us in GIL_CHECKS:
            true, probe = GilProbe.check(threshold, hold_us * 1e-6, release_us * 1e-6)
            res.gil_check[hold_us] = dict(true=true, probe=probe)
            on_line(f"GIL probe check: a thread holding the GIL {100 * true:.1f}% of the time in holds of "
                    f"{hold_us} µs reads as {100 * probe:.1f}%")
    for n in threads:
        rate, mem, used, gil = training_rate(env_id, algo, n, seconds, warmup, threshold if n in probed else None)
        res.training[n], res.memory_mb[n], res.training_cores[n] = rate, mem, used
        floor = res.emulator.get("vector", {}).get(n)
        versus = f", {rate / floor:.2f}× the emulator alone with {n}" if floor else ""
        on_line(f"training {algo} {n:2d} thread(s): {rate:8.0f} agent steps/s ({rate * FRAME_SKIP:.0f} frames/s)"
                f"{versus}, {used:.2f} cores busy, {1000 * used / max(rate, 1e-9):.3f} CPU ms/step, RSS {mem:.0f} MiB")
        if gil is not None:
            res.gil_share[n] = gil
            held_ms = 1000 * gil / max(rate, 1e-9)
            bound = (f": if so, one process could not pass about {1000 / held_ms:.0f} agent steps/s with any number "
                     f"of threads" if held_ms else "")
            on_line(f"  GIL held about {100 * gil:.1f}% of the time (a probe's estimate, threshold "
                    f"{1e6 * threshold:.0f} µs), about {held_ms:.3f} ms per agent step{bound}")
    return res
