"""Kernel benchmark: how long the numerical core takes on this machine.

For four networks, the MLP of the classic-control tasks (4 → 64 → 64 → 2 actions + 1 value, ReLU),
the paper's Atari network (4×84×84 → conv 16 8×8/4 → conv 32 4×4/2 → dense 256 → 6 actions
+ 1 value), and their recurrent versions, ``lstm`` (2 → dense 64 → LSTM 64 → 2 + 1, CartPoleNoVel-v1's)
and ``atari-lstm`` (the Atari body → LSTM 256 → 6 + 1; their segments include BPTT), it times,
as the median over ``repeats`` measurements after a warm-up call:

``forward``        :func:`~numba_a3c.nn.network.forward_row` of one observation (what acting costs);
``segment``        an A3C segment of t_max = 5 steps: five forward passes (the acting passes, whose
                   activations are kept), then :func:`numba_a3c.algorithms.a3c.segment_gradient`:
                   n-step returns, the A3C loss and :func:`~numba_a3c.nn.network.backward_rows`;
``update``         one shared-RMSProp step (:func:`~numba_a3c.optim.rmsprop_update`) on the whole
                   flat parameter array, as the workers run it: in the same pass, the next
                   segment's θ′ ← θ and dθ ← 0;
``update_3_passes`` the same work in three sweeps (the step alone, then dθ ← 0, then θ′ ← θ), as
                   the workers did before the fusion: the ratio of the two is the fusion's gain;
``segment_update`` the five forward passes, then :func:`numba_a3c.algorithms.learner.end_segment`:
                   the segment's gradient, then global norm and one pass for clipping, the RMSProp step,
                   the next segment's θ′ ← θ and dθ ← 0
                   (what one A3C update costs a worker, environment excluded);
``update_traffic`` the update's memory traffic alone: the same seven float32 streams per parameter
                   (read dθ, g, θ; write g, θ, θ′, dθ) with an add in place of RMSProp's square root
                   and division, on arrays of θ's size.

What bounds them: each network's segment is also given in GFLOP/s (2 flops per multiply-add of
its weight matrices, :func:`segment_flops`; PyTorch's too, on the same count), and the update in
GB/s beside ``update_traffic``'s GB/s, the rate this machine moves the same bytes at when
arithmetic costs next to nothing: an update near that rate is bound by memory (or cache)
bandwidth, one well below it by its arithmetic. For the feed-forward networks, ``products_s`` is
the segment's matrix products alone, each timed at the faster of OpenBLAS and the package's own
loops (:func:`segment_products`): a floor under the segment with the kernels at hand, and, beside
PyTorch's segment (``products_ratio``), how fast the products themselves would have to become
for a given ratio to PyTorch. :func:`segment_layers` (``by_layer``) splits a feed-forward
network's segment by layer: each layer's forward and backward passes timed alone beside its
products, and the segment's two halves timed whole, so the time outside the products is placed
(a layer's patch copies, bias and activation; the layers evicting each other's data).

These are the functions the workers run, on a :class:`~numba_a3c.algorithms.state.Learner` built
the way training builds one (:func:`numba_a3c.workers.make_learner`), so the numbers are the cost
of what trains. The timed segment ends at a terminal state (no bootstrap pass: exactly five
forward passes, as in the README's table); a segment cut at t_max adds one forward pass.

Each measurement runs the kernel ``inner`` times inside one nopython loop (chosen so that a
measurement lasts about a millisecond) and divides, so Python's call overhead is not counted:
inside training, the workers call these kernels from nopython code too.

It also measures, each in a fresh subprocess: the *cold compile* time (an empty temporary
``NUMBA_CACHE_DIR``: import, then compile every kernel of the numerical core) and the *warm
start-up* time (the same with the cache that the cold run filled: interpreter start, import, and
every kernel loaded from the cache and called once).

When PyTorch is importable, the same Atari network (with the same weights) is timed in PyTorch on
one thread, side by side, as an optional point of comparison; torch is never a dependency. Its
segment is timed as one batch of t_max observations, and also as a worker has to run it, the
forward passes one observation at a time as it acts (keeping the graph, or acting without it and
recomputing the batch at the segment's end): our segment's forward passes are those acting ones.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from numba_a3c.algorithms import a3c
from numba_a3c.algorithms.learner import end_segment
from numba_a3c.algorithms.state import CI_ACTIVATION_SIZE, SEG_TERMINAL, TI_N, TI_SEGMENT_END
from numba_a3c.benchmarks.report import machine_info
from numba_a3c.config import TrainConfig
from numba_a3c.jit import njit
from numba_a3c.nn.layers import add_dZWt, add_XtdZ, add_xW
from numba_a3c.nn.losses import a3c_loss, q_loss
from numba_a3c.nn.network import (
    Network,
    atari_lstm_spec,
    atari_spec,
    backward_rows,
    forward_row,
    lstm_spec,
    mlp_spec,
)
from numba_a3c.optim import clip_scale, global_norm, momentum_update, rmsprop_update
from numba_a3c.workers import make_learner, new_shared_state

T_MAX = 5
RMS_ALPHA = 0.99
RMS_EPS = 0.1
BETA = 0.01
# Tiny, so that thousands of timed updates leave the parameters (and the timings) where they were.
BENCH_LR = 1e-7


# ----------------------------------------------------------------------------- timed nopython loops
@njit(nogil=True, cache=True)
def _forward_rows(table, params, obs, ws, n):
    for i in range(n):
        forward_row(table, params, obs, ws, i)


@njit(nogil=True, cache=True)
def _forward_rows_loop(table, params, obs, ws, n, inner):
    """``inner`` times the forward passes of rows 0…n−1 (n = 1: one observation, what acting costs;
    over a one-layer slice of the table: that layer alone, :func:`segment_layers`)."""
    for _ in range(inner):
        _forward_rows(table, params, obs, ws, n)


@njit(nogil=True, cache=True)
def _acting_passes(L, n):
    """The forward passes of s_0 … s_{n−1} under θ′ that acting computes (and keeps for backprop)."""
    _forward_rows(L.table, L.theta_local, L.obs, L.ws, n)


@njit(nogil=True, cache=True)
def a3c_segment(L, n):
    """One A3C segment's gradient as a worker computes it: the acting passes, dδ ← 0 (as
    ``end_segment`` does first), :func:`~numba_a3c.algorithms.a3c.segment_gradient`. Returns the loss."""
    _acting_passes(L, n)
    L.delta[0:n, 0:L.config_i[CI_ACTIVATION_SIZE]] = 0.0
    return a3c.segment_gradient(L, n)


@njit(nogil=True, cache=True)
def _segment_loop(L, n, inner):
    for _ in range(inner):
        a3c_segment(L, n)


@njit(nogil=True, cache=True)
def _update_loop(theta, grads, g, lr, alpha, eps, theta_local, inner):
    for _ in range(inner):
        rmsprop_update(theta, grads, g, lr, alpha, eps, 1.0, theta_local)


@njit(nogil=True, cache=True)
def _update_3_passes_loop(theta, grads, g, lr, alpha, eps, theta_local, inner):
    for _ in range(inner):
        rmsprop_update(theta, grads, g, lr, alpha, eps, 1.0)
        grads[:] = 0.0
        theta_local[:] = theta


@njit(nogil=True, cache=True)
def _traffic_loop(theta, grads, g, theta_local, inner):
    """The update's memory traffic with next to no arithmetic: the same 3 arrays read (dθ, g, θ) and
    4 written (g, θ, θ′, dθ) per element, in one sweep. The update's time over this one's says how
    much of the update is moving bytes and how much is its arithmetic (a square root and a division)."""
    zero = np.float32(0.0)
    for _ in range(inner):
        for i in range(theta.shape[0]):
            gi = g[i] + grads[i]
            g[i] = gi
            t = theta[i] + gi
            theta[i] = t
            theta_local[i] = t
            grads[i] = zero


@njit(nogil=True, cache=True)
def _segment_update_loop(L, n, inner):
    for _ in range(inner):
        _acting_passes(L, n)
        L.thread_i[TI_N] = n
        L.thread_i[TI_SEGMENT_END] = SEG_TERMINAL
        end_segment(L)


# A feed-forward network's segment layer by layer (:func:`segment_layers`): the backward pass over
# a one-layer slice of the table, and the segment without its acting passes.
@njit(nogil=True, cache=True)
def _backward_loop(table, params, grads, obs, ws, delta, n, scratch, inner):
    for _ in range(inner):
        backward_rows(table, params, grads, obs, ws, delta, n, scratch)


@njit(nogil=True, cache=True)
def _gradient_loop(L, n, inner):
    """The segment without its acting passes: dδ ← 0, the returns, the loss, the backward pass."""
    for _ in range(inner):
        L.delta[0:n, 0:L.config_i[CI_ACTIVATION_SIZE]] = 0.0
        a3c.segment_gradient(L, n)


# The segment's matrix products one by one (:func:`segment_products`): OpenBLAS through nopython
# np.dot (either orientation), and the package's own product loops.
@njit(nogil=True, cache=True)
def _dot_loop(A, B, C, inner):
    for _ in range(inner):
        np.dot(A, B, C)


@njit(nogil=True, cache=True)
def _xW_loop(x, W, z, inner):
    for _ in range(inner):
        add_xW(x, W, z)


@njit(nogil=True, cache=True)
def _XtdZ_loop(X, dZ, dW, inner):
    for _ in range(inner):
        add_XtdZ(X, dZ, dW)


@njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz"})   # add_dZWt's flags (it is inlined)
def _dZWt_loop(dZ, W, dX, inner):
    for _ in range(inner):
        add_dZWt(dZ, W, dX)


# ----------------------------------------------------------------------------- set-up
class _Case:
    """One network and a worker's :class:`~numba_a3c.algorithms.state.Learner` for it (one thread,
    the A3C settings below), its segment filled with seeded random observations, actions and rewards."""

    def __init__(self, name, spec, seed=0):
        self.name = name
        self.net = Network(spec)
        rng = np.random.default_rng(seed)
        config = TrainConfig(algo="a3c", threads=1, t_max=T_MAX, beta=BETA, lr=BENCH_LR, anneal_lr=False,
                             rms_alpha=RMS_ALPHA, rms_eps=RMS_EPS, clip_norm=40.0, seed=seed)
        self.L = L = make_learner(new_shared_state(config, self.net), self.net, 0)
        L.theta_local[:] = L.theta                      # θ′ ← θ, as the segment's start does
        L.thread_i[TI_SEGMENT_END] = SEG_TERMINAL       # no bootstrap pass (see the module docstring)
        shape = (T_MAX + 1, self.net.input_size)
        if len(spec.input_shape) == 3:
            frames = rng.integers(0, 256, size=shape)
            L.obs[:] = frames * np.float32(spec.input_scale)
        else:
            L.obs[:] = rng.standard_normal(shape)
        L.actions[:] = rng.integers(0, spec.n_actions, size=T_MAX + 1)
        L.rewards[:] = rng.standard_normal(T_MAX + 1)
        # Gradients for the stand-alone optimiser timing: a typical, non-zero gradient.
        self.update_grads = (rng.standard_normal(L.theta.shape) * 1e-3).astype(np.float32)
        # Four arrays of θ's size for the traffic reference (zeros: they stay zeros, so nothing drifts).
        self.traffic_arrays = [np.zeros_like(L.theta) for _ in range(4)]

    def forward(self, inner):
        _forward_rows_loop(self.net.table, self.L.theta_local, self.L.obs, self.L.ws, 1, inner)

    def segment(self, inner):
        _segment_loop(self.L, T_MAX, inner)

    def update(self, inner):
        # The gradient is zeroed by the first call, in both variants alike (the work per element
        # does not depend on its value).
        _update_loop(self.L.theta, self.update_grads, self.L.opt_shared, BENCH_LR, RMS_ALPHA, RMS_EPS,
                     self.L.theta_local, inner)

    def update_3_passes(self, inner):
        _update_3_passes_loop(self.L.theta, self.update_grads, self.L.opt_shared, BENCH_LR, RMS_ALPHA, RMS_EPS,
                              self.L.theta_local, inner)

    def segment_update(self, inner):
        _segment_update_loop(self.L, T_MAX, inner)

    def update_traffic(self, inner):
        _traffic_loop(*self.traffic_arrays, inner)


def multiply_adds(net):
    """(forward, backward) multiply-adds for one row of ``net``: the arithmetic a step costs.

    Each weight matrix W (an LSTM's W and U too) takes one multiply-add per entry per output
    position (a conv layer's Ho·Wo, a dense layer's 1) in the forward pass; backward takes as many
    again for ∂W, and as many again for ∂x unless the layer's input is the observation.
    Biases, activations and the loss are left out (a few % on these networks)."""
    weights = {p.name: p.size for p in net.params}
    fwd = bwd = 0
    for layer in net.layers:
        positions = int(np.prod(layer["output_shape"][1:])) if layer["type"] == "conv" else 1
        macs = positions * sum(weights.get(f"{layer['name']}/{m}", 0) for m in ("W", "U"))
        fwd += macs
        bwd += macs * (1 if layer["input"] == "observation" else 2)
    return fwd, bwd


def segment_flops(net, n=T_MAX):
    """Floating-point operations (2 per multiply-add) of an n-step segment: n forward and n backward rows."""
    fwd, bwd = multiply_adds(net)
    return 2 * n * (fwd + bwd)


#: Bytes the one-pass update moves per parameter: reads dθ, g, θ; writes g, θ, θ′, dθ (float32).
UPDATE_BYTES_PER_PARAM = 4 * 7


def segment_products_list(net, n=T_MAX):
    """The matrix products of an n-step segment of ``net``, as (what, count, m, k, p): ``count``
    products of an (m × k) by a (k × p) matrix. Per row, each layer's forward product (a conv
    layer's W·patches, a dense layer's x·W) and each conv layer's ∂W and ∂patches; per segment,
    each dense layer's ∂W = Xᵀ∂Z and ∂X = ∂Z Wᵀ over the n rows; no ∂x where the input is the
    observation. Their flops, 2·count·m·k·p, add up to :func:`segment_flops`. None for a
    recurrent network."""
    if any(layer["type"] not in ("conv", "dense") for layer in net.layers):
        return None
    out = []
    for layer in net.layers:
        name, need_dx = layer["name"], layer["input"] != "observation"
        if layer["type"] == "conv":
            O = layer["output_shape"][0]
            K = layer["input_shape"][0] * layer["kernel"] ** 2
            P = int(np.prod(layer["output_shape"][1:]))
            out += [(f"{name} forward", n, O, K, P), (f"{name} dW", n, K, P, O)]
            if need_dx:
                out.append((f"{name} dpatches", n, K, O, P))
        else:
            n_in, n_out = layer["input_shape"][0], layer["output_shape"][0]
            out += [(f"{name} forward", n, 1, n_in, n_out), (f"{name} dW", 1, n_in, n, n_out)]
            if need_dx:
                out.append((f"{name} dX", 1, n, n_out, n_in))
    return out


def segment_products(net, repeats, n=T_MAX, seed=0):
    """Seconds that the matrix products of an n-step segment of ``net`` take when each is timed
    alone (the sum of :func:`segment_product_times`): a floor under the segment's time with
    today's kernels, since a faster segment needs products faster than both kernels tried.
    None for a recurrent network."""
    times = segment_product_times(net, repeats, n, seed)
    return None if times is None else sum(t for _, t in times)


def segment_product_times(net, repeats, n=T_MAX, seed=0):
    """[(what, seconds)] for each matrix product of an n-step segment of ``net``
    (:func:`segment_products_list`; the seconds are for all ``count`` of them), each timed alone
    at the faster of two kernels:
    OpenBLAS (nopython ``np.dot``, in whichever orientation runs faster, its operands already laid
    out for it) and, for the dense layers, the package's own loops (:func:`~numba_a3c.nn.layers.add_xW`,
    ``add_XtdZ``, ``add_dZWt``). The operand a product reads from a ReLU (a layer's input that is
    not the observation) is half zeros, as in training (the package's loops skip them).

    Nothing else is counted (patch gathering, activations, the loss). None for a recurrent
    network."""
    products = segment_products_list(net, n)
    if products is None:
        return None
    rng = np.random.default_rng(seed)
    reads_relu = {layer["name"]: layer["input"] != "observation" for layer in net.layers}
    dense = {layer["name"]: layer["type"] == "dense" for layer in net.layers}

    def rand(*shape, sparse=False):
        a = rng.standard_normal(shape).astype(np.float32)
        return np.maximum(a, 0) if sparse else a

    def zeros(*shape):
        return np.zeros(shape, np.float32)

    def best(*variants):
        return min(time_call(lambda inner, fn=fn, args=args: fn(*args, inner), repeats)[0] for fn, args in variants)

    out = []
    for what, count, m, k, p in products:
        layer, step = what.split(" ")
        sparse = reads_relu[layer]
        if dense[layer] and step == "forward":          # x·W: x from a ReLU
            x, W = rand(k, sparse=sparse), rand(k, p)
            t = best((_xW_loop, (x, W, zeros(p))), (_dot_loop, (x.reshape(1, k), W, zeros(1, p))))
        elif dense[layer] and step == "dW":             # Xᵀ∂Z: X from a ReLU
            X, dZ = rand(k, m, sparse=sparse), rand(k, p)
            t = best((_XtdZ_loop, (X, dZ, zeros(m, p))), (_dot_loop, (X.T.copy(), dZ, zeros(m, p))))
        elif dense[layer]:                               # ∂X = ∂Z Wᵀ
            dZ, W = rand(m, k), rand(p, k)
            t = best((_dZWt_loop, (dZ, W, zeros(m, p))), (_dot_loop, (dZ, W.T.copy(), zeros(m, p))))
        else:                                            # conv: BLAS, (m×k)(k×p) or its transpose
            sparse_a, sparse_b = (False, sparse) if step == "forward" else (sparse, False)
            A, B = rand(m, k, sparse=sparse_a), rand(k, p, sparse=sparse_b)
            t = best((_dot_loop, (A, B, zeros(m, p))), (_dot_loop, (B.T.copy(), A.T.copy(), zeros(p, m))))
        out.append((what, count * t))
    return out


def segment_layers(case, repeats, product_times, n=T_MAX):
    """Where a feed-forward network's n-step segment spends its time, layer by layer.

    After one real segment (so the activations, patch matrices and ∂L/∂outputs are what a
    segment leaves), each layer is timed alone, over a one-row slice of the network's table:
    its forward pass of the n rows (:func:`~numba_a3c.nn.network.forward_row`: the product, the
    patch matrix of a conv layer, the bias and activation) and its backward pass
    (:func:`~numba_a3c.nn.network.backward_rows`: the activation's backward, ∂W, ∂b and ∂x),
    beside its matrix products alone (from ``product_times``, :func:`segment_product_times`).
    Then the segment's two halves are timed whole: the n acting passes, and the gradient
    (dδ ← 0, returns, loss, backward pass). A layer timed alone runs with its own data warm in
    the caches; the halves run layer after layer as training does, so the whole minus the sum
    of the layers is what the layers cost each other (mostly data evicted from the caches
    between them).

    Returns None for a recurrent network, else ``{"layers": [{"layer", "forward_s",
    "backward_s", "products_s"}, ...], "layers_sum_s", "forward_s", "gradient_s"}``; the
    Learner's gradient accumulator is left at zero.
    """
    net, L = case.net, case.L
    if net.recurrent or product_times is None or len(net.layers) != net.table.shape[0]:
        return None
    a3c_segment(L, n)
    layers = []
    for l, layer in enumerate(net.layers):
        one = np.ascontiguousarray(net.table[l:l + 1])
        forward = time_call(lambda inner, t=one: _forward_rows_loop(t, L.theta_local, L.obs, L.ws, n, inner),
                            repeats)[0]
        backward = time_call(lambda inner, t=one: _backward_loop(t, L.theta_local, L.grads, L.obs, L.ws, L.delta,
                                                                 n, L.backward_scratch, inner), repeats)[0]
        products = sum(t for what, t in product_times if what.split(" ")[0] == layer["name"])
        layers.append({"layer": layer["name"], "forward_s": forward, "backward_s": backward,
                       "products_s": products})
    whole_forward = time_call(lambda inner: _forward_rows_loop(net.table, L.theta_local, L.obs, L.ws, n, inner),
                              repeats)[0]
    gradient = time_call(lambda inner: _gradient_loop(L, n, inner), repeats)[0]
    L.grads[:] = 0.0
    return {"layers": layers, "layers_sum_s": sum(e["forward_s"] + e["backward_s"] for e in layers),
            "forward_s": whole_forward, "gradient_s": gradient}


def cases():
    """The benchmarked networks: the MLP (4→64→64→2+1), the Atari network (6 actions), and their
    recurrent versions (CartPoleNoVel-v1's 2→64→LSTM 64→2+1, and the Atari body → LSTM 256)."""
    return [
        _Case("mlp", mlp_spec(4, 2, (64, 64), "relu")),
        _Case("atari", atari_spec(6)),
        _Case("lstm", lstm_spec(2, 2, (64, 64), "tanh")),
        _Case("atari-lstm", atari_lstm_spec(6)),
    ]


def time_call(fn, repeats, target_s=1e-3):
    """Median seconds per call of ``fn(inner)``/inner over ``repeats`` measurements (warm-up excluded)."""
    fn(1)  # compile or load from the cache; warm the caches
    t0 = time.perf_counter()
    fn(1)
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, min(100_000, int(target_s / once)))
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn(inner)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times), inner


# ----------------------------------------------------------------------------- compile and start-up
def warm_up():
    """Compile (or load from the cache) every kernel of the numerical core, calling each once.

    The library's kernels take the same argument types for every network, so one tiny MLP with
    both kinds of heads and a tiny conv net exercise all of them.
    """
    from numba_a3c.nn.network import small_conv_spec

    for spec in (mlp_spec(4, 2, (8,), "tanh"), mlp_spec(4, 2, (8,), "relu", heads="q"),
                 small_conv_spec((1, 5, 5), 3, filters=2, hidden=4), lstm_spec(4, 2, (8, 4))):
        net = Network(spec)
        params = net.init_params(0)
        grads = np.zeros_like(params)
        obs, ws, delta = net.buffers(2)
        forward_row(net.table, params, obs, ws, 0)
        A = spec.n_actions
        actions = np.zeros(2, np.int64)
        targets = np.zeros(2, np.float32)
        if net.out_q >= 0:
            q_loss(ws[:, net.out_q:net.out_q + A], actions, targets, delta[:, net.out_q:net.out_q + A], 1)
        else:
            a3c_loss(ws[:, net.out_pi:net.out_pi + A], ws[:, net.out_v:net.out_v + 1], actions, targets, 0.01, 1.0, 1.0,
                     delta[:, net.out_pi:net.out_pi + A], delta[:, net.out_v:net.out_v + 1],
                     np.zeros(A, np.float32), 1)
        backward_rows(net.table, params, grads, obs, ws, delta, 1, net.backward_scratch(1))
    g = np.zeros_like(params)
    scale = clip_scale(global_norm(grads), 40.0)
    rmsprop_update(params, grads, g, 1e-3, 0.99, 0.1, scale)
    momentum_update(params, grads, g, 1e-3, 0.99, scale)


_STARTUP_SCRIPT = "from numba_a3c.benchmarks.kernels import warm_up; warm_up()"


def startup_times():
    """(cold compile seconds, warm start-up seconds), each the wall time of a fresh interpreter
    that imports the package and makes every kernel ready: first with an empty temporary
    ``NUMBA_CACHE_DIR`` (everything compiles), then with the cache that run filled."""
    with tempfile.TemporaryDirectory(prefix="asyncrl-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("NUMBA_DISABLE_JIT", None)
        out = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], env=env, check=True)
            out.append(time.perf_counter() - t0)
    return out[0], out[1]


# ----------------------------------------------------------------------------- optional PyTorch
def torch_comparison(case, repeats):
    """Time ``case``'s actor-critic network in PyTorch on one thread, with the same weights.

    Returns None without torch, else a dict: the forward (one observation) and segment (forward
    of the t_max rows as one batch, the same A3C loss, backward) medians, the segment again with
    its forward passes one observation at a time (``segment_stepwise_s``: what a PyTorch A3C worker
    that acts step by step and keeps the graph runs, and what our segment does), and the largest
    differences between PyTorch's and our head outputs and parameter gradients (a float32
    cross-check of the kernels).
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    net, L = case.net, case.L
    L.grads[:] = 0.0
    a3c_segment(L, T_MAX)      # ours first: it computes the n-step returns that the PyTorch loss takes too
    views = net.views(L.theta_local)
    modules = {}  # layer name -> torch module holding the same weights
    body = []
    for layer in net.layers:
        W, b = views[layer["name"] + "/W"], views[layer["name"] + "/b"]
        if layer["type"] == "conv":
            m = torch.nn.Conv2d(W.shape[1], W.shape[0], layer["kernel"], layer["stride"])
            m.weight.data = torch.from_numpy(W.copy())
        else:
            m = torch.nn.Linear(W.shape[0], W.shape[1])
            m.weight.data = torch.from_numpy(W.T.copy())  # torch stores (out, in)
        m.bias.data = torch.from_numpy(b.copy())
        modules[layer["name"]] = m
        if layer.get("head"):
            continue
        if layer["type"] == "dense" and len(layer["input_shape"]) == 1 and body and \
                isinstance(body[-2], torch.nn.Conv2d):
            body.append(torch.nn.Flatten())
        body += [m, torch.nn.ReLU()]
    body = torch.nn.Sequential(*body)
    pi, v = modules["pi"], modules["v"]
    params = [p for m in modules.values() for p in m.parameters()]
    x = torch.from_numpy(L.obs[:T_MAX].reshape((T_MAX,) + tuple(net.spec.input_shape)).copy())
    actions = torch.from_numpy(L.actions[:T_MAX])
    returns = torch.from_numpy(L.returns[:T_MAX].copy())

    def loss_of(xb, stepwise=False):
        # stepwise: one observation at a time, as a worker acting step by step must run the
        # forward passes (the graph kept for the backward pass), instead of one batch of t_max.
        h = torch.cat([body(xb[i:i + 1]) for i in range(len(xb))]) if stepwise else body(xb)
        logits, value = pi(h), v(h)[:, 0]
        logp = torch.log_softmax(logits, 1)
        adv = returns - value
        entropy = -(logp.exp() * logp).sum(1)
        policy = -(adv.detach() * logp.gather(1, actions[:, None])[:, 0]).sum()
        return policy - BETA * entropy.sum() + 0.5 * (adv * adv).sum(), logits, value

    def forward(inner):
        with torch.no_grad():
            for _ in range(inner):
                pi(body(x[:1]))

    def segment(inner, stepwise=False):
        for _ in range(inner):
            for p in params:
                p.grad = None
            loss_of(x, stepwise)[0].backward()

    t_forward, _ = time_call(forward, repeats)
    t_segment, _ = time_call(segment, repeats)
    t_stepwise, _ = time_call(lambda inner: segment(inner, stepwise=True), repeats)

    # Cross-check against our kernels on the same weights and data.
    for p in params:
        p.grad = None
    loss, logits, value = loss_of(x)
    loss.backward()
    ours = net.views(L.grads)
    rel_grad = 0.0
    for layer in net.layers:
        m = modules[layer["name"]]
        gW = m.weight.grad.numpy()
        for name, g in ((layer["name"] + "/W", gW if layer["type"] == "conv" else gW.T),
                        (layer["name"] + "/b", m.bias.grad.numpy())):
            rel_grad = max(rel_grad, float(np.abs(ours[name] - g).max()) / max(float(np.abs(g).max()), 1e-6))
    A = net.spec.n_actions
    diff_out = max(float(np.abs(L.ws[:T_MAX, net.out_pi:net.out_pi + A] - logits.detach().numpy()).max()),
                   float(np.abs(L.ws[:T_MAX, net.out_v] - value.detach().numpy()).max()))
    L.grads[:] = 0.0
    return {"version": torch.__version__, "threads": 1, "forward_s": t_forward, "segment_s": t_segment,
            "segment_stepwise_s": t_stepwise, "max_output_diff": diff_out, "max_rel_grad_diff": rel_grad}


# ----------------------------------------------------------------------------- the whole benchmark
def run(repeats=20, compile_times=True, torch=True, progress=None, layers=True):
    """Run the whole benchmark and return its results as a JSON-ready dict (times in seconds);
    ``layers``: also time the feed-forward networks' segments layer by layer (:func:`segment_layers`)."""
    say = progress or (lambda msg: None)
    result = {"machine": machine_info(), "repeats": int(repeats), "t_max": T_MAX, "networks": {}}
    for case in cases():
        say(f"timing {case.name} ({case.net.n_params:,} parameters)")
        entry = {"n_params": case.net.n_params}
        for what in ("forward", "segment", "update", "update_3_passes", "segment_update", "update_traffic"):
            entry[what + "_s"], entry[what + "_inner"] = time_call(getattr(case, what), repeats)
        entry["segment_flops"] = segment_flops(case.net)
        entry["segment_gflops_per_s"] = entry["segment_flops"] / entry["segment_s"] / 1e9
        product_times = segment_product_times(case.net, repeats)
        if product_times is not None:
            entry["products_s"] = products = sum(t for _, t in product_times)
            entry["products_share"] = products / entry["segment_s"]
            if layers:
                entry["by_layer"] = segment_layers(case, repeats, product_times)
        moved = UPDATE_BYTES_PER_PARAM * case.net.n_params
        entry["update_bytes"] = moved
        entry["update_gb_per_s"] = moved / entry["update_s"] / 1e9
        entry["traffic_gb_per_s"] = moved / entry["update_traffic_s"] / 1e9
        result["networks"][case.name] = entry
        if case.name == "atari" and torch:
            say("timing the same Atari network in PyTorch (one thread)")
            try:
                cmp = torch_comparison(case, repeats)
            except Exception as exc:  # noqa: BLE001  (an optional comparison must not sink the benchmark)
                cmp = {"skipped": f"PyTorch failed ({type(exc).__name__}: {exc})"}
            if cmp is None:
                cmp = {"skipped": "torch is not installed (optional: it is only a comparison)"}
            elif "skipped" not in cmp:
                cmp["segment_ratio"] = entry["segment_s"] / cmp["segment_s"]
                # A PyTorch worker's two ways of running what our segment runs: the forward passes
                # one at a time keeping the graph, or acting without it and recomputing the segment
                # as one batch; the cheaper is its best.
                cmp["segment_recompute_s"] = T_MAX * cmp["forward_s"] + cmp["segment_s"]
                cmp["worker_s"] = min(cmp["segment_stepwise_s"], cmp["segment_recompute_s"])
                cmp["worker_ratio"] = entry["segment_s"] / cmp["worker_s"]
                cmp["forward_ratio"] = entry["forward_s"] / cmp["forward_s"]
                cmp["segment_gflops_per_s"] = entry["segment_flops"] / cmp["segment_s"] / 1e9
                cmp["products_ratio"] = entry["products_s"] / cmp["segment_s"]
            result["torch"] = cmp
    if compile_times:
        say("measuring cold compile and warm start-up in fresh interpreters")
        cold, warm = startup_times()
        result["cold_compile_s"] = cold
        result["warm_startup_s"] = warm
    return result
