"""Networks: a small spec → one flat parameter array → whole-network forward and backward passes.

A network is described by a :class:`NetworkSpec` (input shape, body layers, heads). From it,
:class:`Network` computes a *layout*: where every layer's weights and biases live inside ONE
contiguous float32 parameter array (``conv1/W``, ``fc1/b``, ``pi/W``, ``v/b``, ``q/W`` …), and where
every layer's output lives inside a per-sample *workspace row*. The layout is also compiled into
a small int64 *layer table* that the nopython passes below interpret, so a single compiled kernel
runs the MLP, the small conv net and the Atari net alike, inside worker threads, without Python.

Heads
-----
* ``"q"``: one linear output per action, Q(s, ·).
* ``"actor_critic"``: a policy head ``pi`` (logits; π = softmax(logits)) and a value head ``v``
  (one linear output) that share every body layer. Both heads read the body's last output, and
  their input gradients add up there during backpropagation.
* ``"gaussian"``: the continuous-action policy of the paper for a Box action space of D
  dimensions: a linear mean head ``mu`` (μ, D outputs), a linear head ``sigma`` (D outputs s; the
  variance is σ² = softplus(s) + VAR_MIN, applied by the loss and the samplers, see
  :func:`numba_a3c.nn.losses.gaussian_a3c_loss`) and the value head ``v``. ``n_actions`` is D.
  Actions live in the unit box [−1, 1]^D: what is sent to the environment is the sample clipped
  to it and scaled to the action bounds ``action_low``/``action_high`` (:func:`scale_action`).
  Each workspace row also holds, after the layer outputs, the D-vector of the UNCLIPPED action
  sampled in that state (``out_action``): the loss needs it and it is not a layer output.

With ``separate_value`` (actor-critic and Gaussian heads, dense bodies) the value head does not
share the body: it reads a tower of its own, ``vfc1``, ``vfc2``, … with the body's sizes and
activations, from the observation; the policy heads keep the body.

Workspaces
----------
``obs`` is a (rows, input_size) float32 array of observations (already scaled). ``ws`` is a
(rows, workspace_size) float32 array: row i holds the outputs of every layer for observation i
(post-activation) and, for conv layers, the im2col patch matrix of that row. Because the acting
forward pass writes these, the backward pass of a segment reuses them instead of recomputing the
forward pass. ``delta`` has the shape of ``ws`` and holds ∂L/∂(layer outputs) during backward; its
conv-patch area is reused as scratch for the patch gradients. Whatever else the backward pass
works in is one 1-D array of :func:`backward_scratch_size` numbers (:meth:`Network.backward_scratch`),
kept by the caller.

Recurrent layers
----------------
A body may hold an ``"lstm"`` layer (:mod:`numba_a3c.nn.lstm`; ``--network lstm`` and
``atari-lstm``). Its area of a workspace row keeps, besides its output h_t, what BPTT needs: the
cell, tanh(cell), the gates and the state (h_{t−1}, c_{t−1}) the step started from (``LSTM_*``).
Consecutive rows are consecutive steps: :func:`forward_row` on row t writes (h_t, c_t) into row
t+1, and :func:`backward_rows` backpropagates through time over the rows it is given (the
gradient stops at row 0's incoming state: truncated BPTT). :func:`carry_state`,
:func:`keep_state` and :func:`reset_state` move that state between segments, steps and episodes.

Initialisation
--------------
Two schemes, chosen by the configuration's ``init``; biases are 0 in both, and the policy head
starts 100× smaller than the rest so the initial policy is close to uniform. Seeded with a
NumPy PCG64 generator.

* ``uniform``: W ~ U(−1/√fan_in, 1/√fan_in) (fan_in = n_in for dense, in_channels·kh·kw for
  conv), the default of Torch7 used by the paper's authors. Each ReLU layer then shrinks the
  activations' scale (on Pong frames: mean 0.08 after conv1, 0.016 after fc1).
* ``orthogonal``: W = gain·Q with Q a random orthogonal matrix and gain √2 for ReLU layers (1 for
  the value and Q heads, 0.01 for the policy head), as in the A2C/ACKTR baselines: the activation
  scale is kept from layer to layer, so the heads see features of order 1 from the first step.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from numba_a3c.jit import njit
from numba_a3c.nn.layers import (
    conv2d_backward,
    conv2d_forward,
    dense_backward,
    dense_forward,
    relu_backward,
    relu_forward,
    tanh_backward,
    tanh_forward,
)
from numba_a3c.nn.losses import VAR_MIN
from numba_a3c.nn.lstm import FORGET_BIAS, GATE_ORDER, lstm_backward, lstm_forward

# Layer kinds and activations as they appear in the layer table (and in checkpoint attributes).
DENSE = 0
CONV = 1
LSTM = 2
ACT_NONE = 0
ACT_RELU = 1
ACT_TANH = 2
ACTIVATIONS = {"linear": ACT_NONE, "relu": ACT_RELU, "tanh": ACT_TANH}

# Columns of the layer table.
T_KIND, T_ACT, T_IN, T_IN_SIZE, T_OUT, T_OUT_SIZE, T_W, T_B = 0, 1, 2, 3, 4, 5, 6, 7
T_C, T_H, T_WD, T_O, T_HO, T_WO, T_KH, T_KW, T_STRIDE, T_COLS, T_NEED_DX = 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
T_COLUMNS = 19
INPUT = -1  # T_IN value of a layer that reads the observation
# An LSTM row reuses a conv column: T_U is the offset of its recurrent weights U (H, 4H). Its
# T_OUT area of a workspace row holds 9H numbers (see ``lstm_areas``), T_OUT_SIZE is H.
T_U = T_C
# An LSTM's area of a workspace row, at T_OUT, in units of H: its output h_t, the cell c_t,
# tanh(c_t), the gates i, f, g, o (4H, post-activation), then the state the step started from,
# h_{t−1} and c_{t−1}. Only h_t is read by the next layer; the rest is kept for BPTT.
LSTM_H, LSTM_C, LSTM_TC, LSTM_GATES, LSTM_H_IN, LSTM_C_IN, LSTM_AREA = 0, 1, 2, 3, 7, 8, 9

HEADS = ("q", "actor_critic", "gaussian")

# Initialisation schemes (``Network.init_params``) and the orthogonal scheme's gain per activation.
INIT_SCHEMES = ("uniform", "orthogonal")
INIT_GAINS = {"relu": float(np.sqrt(2.0)), "tanh": 1.0, "linear": 1.0}


def _orthogonal(rng, rows, cols):
    """A (rows, cols) matrix with orthonormal columns (or rows, whichever are fewer): the Q of a
    Gaussian matrix's QR decomposition, signs fixed so that the result is uniformly distributed."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


@dataclass(frozen=True)
class LayerSpec:
    """One body layer. ``kind`` is "dense" (``size`` outputs), "conv" (``size`` filters of
    ``kernel``×``kernel`` at ``stride``) or "lstm" (``size`` cells, :mod:`numba_a3c.nn.lstm`; its
    output h_t = o_t ⊙ tanh(c_t) takes no further activation, so its ``activation`` is "linear");
    ``activation`` is "relu", "tanh" or "linear"."""

    kind: str
    size: int
    activation: str = "relu"
    kernel: int = 0
    stride: int = 1


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is: input shape, body layers, heads and number of actions.

    ``input_shape`` is (n,) for vector observations or (C, H, W) for images; ``input_scale``
    multiplies raw observations on the way in (1/255 for uint8 Atari frames); ``input_encoding``
    is "one-hot" where the environment's observations are state indices k ∈ {0, …, n−1}, given to
    the network as the one-hot vector e_k (input_shape (n,)).
    """

    input_shape: tuple
    n_actions: int
    body: tuple = field(default_factory=tuple)
    heads: str = "actor_critic"
    input_scale: float = 1.0
    input_encoding: str = ""   # "one-hot": the environment's Discrete(n) observation k arrives as e_k
    action_low: tuple = ()     # "gaussian" heads: the Box action bounds, one per dimension (±inf: unbounded)
    action_high: tuple = ()
    separate_value: bool = False   # actor-critic heads: V has its own dense tower instead of sharing the body
    action_start: int = 0          # discrete actions: the environment's action for output k is k + action_start

    def to_dict(self):
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["body"] = [asdict(layer) for layer in self.body]
        if self.heads == "gaussian":
            d["action_low"] = [float(x) for x in self.action_low]
            d["action_high"] = [float(x) for x in self.action_high]
        else:   # a discrete network's dict (and so its checkpoints) stays as it was
            del d["action_low"], d["action_high"]
        if not self.separate_value:
            del d["separate_value"]
        if not self.action_start:
            del d["action_start"]
        return d

    @staticmethod
    def from_dict(d):
        return NetworkSpec(
            input_shape=tuple(int(s) for s in d["input_shape"]),
            n_actions=int(d["n_actions"]),
            body=tuple(LayerSpec(**layer) for layer in d["body"]),
            heads=str(d["heads"]),
            input_scale=float(d["input_scale"]),
            input_encoding=str(d.get("input_encoding", "")),
            action_low=tuple(float(x) for x in d.get("action_low", ())),
            action_high=tuple(float(x) for x in d.get("action_high", ())),
            separate_value=bool(d.get("separate_value", False)),
            action_start=int(d.get("action_start", 0)),
        )


def mlp_spec(obs_dim, n_actions, hidden=(64, 64), activation="relu", heads="actor_critic"):
    """A multilayer perceptron for vector observations: obs → dense(h1) → … → heads."""
    body = tuple(LayerSpec("dense", int(h), activation) for h in hidden)
    return NetworkSpec((int(obs_dim),), int(n_actions), body, heads)


def atari_spec(n_actions, heads="actor_critic"):
    """The paper's network: 4×84×84 frames → conv 16 8×8/4 → conv 32 4×4/2 → dense 256 → heads."""
    body = (LayerSpec("conv", 16, "relu", 8, 4), LayerSpec("conv", 32, "relu", 4, 2), LayerSpec("dense", 256, "relu"))
    return NetworkSpec((4, 84, 84), int(n_actions), body, heads, input_scale=1.0 / 255.0)


def lstm_spec(obs_dim, n_actions, hidden=(64, 64), activation="relu", heads="actor_critic"):
    """A recurrent network for vector observations: obs → dense(h1) → … → dense(h_{k−1}) → LSTM(h_k) →
    heads. The last hidden size is the LSTM's number of cells; the ones before it make the MLP body."""
    hidden = tuple(int(h) for h in hidden)
    body = tuple(LayerSpec("dense", h, activation) for h in hidden[:-1]) + (LayerSpec("lstm", hidden[-1], "linear"),)
    return NetworkSpec((int(obs_dim),), int(n_actions), body, heads)


def atari_lstm_spec(n_actions, heads="actor_critic", cells=256):
    """The paper's A3C LSTM: the Atari body (conv 16 8×8/4 → conv 32 4×4/2 → dense 256) → LSTM(256) → heads."""
    spec = atari_spec(n_actions, heads)
    return NetworkSpec(spec.input_shape, spec.n_actions, spec.body + (LayerSpec("lstm", int(cells), "linear"),),
                       heads, input_scale=spec.input_scale)


def small_conv_spec(input_shape, n_actions, heads="actor_critic", filters=16, hidden=128):
    """A small conv net for small pixel observations (Catch): conv ``filters`` 3×3/1 → dense → heads."""
    body = (LayerSpec("conv", int(filters), "relu", 3, 1), LayerSpec("dense", int(hidden), "relu"))
    return NetworkSpec(tuple(int(s) for s in input_shape), int(n_actions), body, heads)


@dataclass(frozen=True)
class ParamEntry:
    """Where one named tensor lives in the flat parameter array."""

    name: str
    offset: int
    shape: tuple

    @property
    def size(self):
        return int(np.prod(self.shape))


class Network:
    """A network's layout over one flat float32 parameter array, and its passes.

    Attributes: ``spec``; ``params`` (list of :class:`ParamEntry`, in layer order);
    ``n_params``; ``layers`` (list of dicts describing each layer, in order: name, type,
    activation, stride, kernel, input (the name of the layer it reads, or "observation"),
    input_shape, output_shape, and head=True for output heads);
    ``table`` (the int64 layer table the kernels read); ``input_size``; ``workspace_size``;
    ``activation_size`` (the leading part of a workspace row that holds layer outputs);
    ``out_q``/``out_pi``/``out_v``/``out_mu``/``out_sigma`` (workspace offsets of the head outputs,
    −1 if absent) and ``out_action`` (a Gaussian network's sampled-action slot, −1 if absent);
    ``state_areas`` and ``state_size`` (where each LSTM's incoming state sits in a workspace row,
    and their total size: 0 for a feed-forward network).
    """

    def __init__(self, spec: NetworkSpec):
        if spec.heads not in HEADS:
            raise ValueError(f"unknown heads {spec.heads!r}; expected one of {HEADS}")
        self.spec = spec
        self.input_size = int(np.prod(spec.input_shape))
        self.params = []
        self.layers = []
        rows = []
        n_params = 0
        ws = 0
        cols_requests = []

        def add_param(name, shape):
            nonlocal n_params
            entry = ParamEntry(name, n_params, tuple(int(s) for s in shape))
            self.params.append(entry)
            n_params += entry.size
            return entry.offset

        def add_output(size):
            nonlocal ws
            off = ws
            ws += int(size)
            return off

        shape = tuple(spec.input_shape)
        in_off, in_size = INPUT, self.input_size
        in_name = "observation"
        n_conv = n_dense = n_lstm = 0
        self.state_areas = []   # (workspace offset, 2H) of each LSTM's incoming state (h_{t−1}, c_{t−1})
        for layer in spec.body:
            row = np.zeros(T_COLUMNS, np.int64)
            if layer.activation not in ACTIVATIONS:
                raise ValueError(f"unknown activation {layer.activation!r}; expected one of {sorted(ACTIVATIONS)}")
            row[T_ACT] = ACTIVATIONS[layer.activation]
            if layer.kind == "conv":
                if len(shape) != 3:
                    raise ValueError("a conv layer needs a (channels, height, width) input")
                n_conv += 1
                name = f"conv{n_conv}"
                C, H, Wd = shape
                k, s = int(layer.kernel), int(layer.stride)
                Ho, Wo = (H - k) // s + 1, (Wd - k) // s + 1
                if Ho < 1 or Wo < 1:
                    raise ValueError(f"{name}: a {k}×{k} kernel does not fit a {H}×{Wd} input")
                O = int(layer.size)
                row[T_KIND] = CONV
                row[T_C], row[T_H], row[T_WD], row[T_O], row[T_HO], row[T_WO] = C, H, Wd, O, Ho, Wo
                row[T_KH] = row[T_KW] = k
                row[T_STRIDE] = s
                row[T_W] = add_param(f"{name}/W", (O, C, k, k))
                row[T_B] = add_param(f"{name}/b", (O,))
                out_shape = (O, Ho, Wo)
                cols_requests.append((len(rows), C * k * k * Ho * Wo))
                self.layers.append(dict(name=name, type="conv", activation=layer.activation, stride=s,
                                        kernel=k, input=in_name, input_shape=shape, output_shape=out_shape))
            elif layer.kind == "dense":
                n_dense += 1
                name = f"fc{n_dense}"
                n_in, n_out = in_size, int(layer.size)
                row[T_KIND] = DENSE
                row[T_W] = add_param(f"{name}/W", (n_in, n_out))
                row[T_B] = add_param(f"{name}/b", (n_out,))
                out_shape = (n_out,)
                self.layers.append(dict(name=name, type="dense", activation=layer.activation, stride=1,
                                        kernel=0, input=in_name, input_shape=(n_in,), output_shape=out_shape))
            elif layer.kind == "lstm":
                if layer.activation != "linear":
                    raise ValueError(f"an lstm layer takes no activation (its output is o ⊙ tanh(c)); "
                                     f"got {layer.activation!r}, use 'linear'")
                n_lstm += 1
                name = f"lstm{n_lstm}"
                n_in, H = in_size, int(layer.size)
                row[T_KIND] = LSTM
                row[T_W] = add_param(f"{name}/W", (n_in, 4 * H))
                row[T_U] = add_param(f"{name}/U", (H, 4 * H))
                row[T_B] = add_param(f"{name}/b", (4 * H,))
                out_shape = (H,)
                self.layers.append(dict(name=name, type="lstm", activation="linear", stride=1, kernel=0,
                                        input=in_name, input_shape=(n_in,), output_shape=out_shape,
                                        cells=H, gate_order=GATE_ORDER))
            else:
                raise ValueError(f"unknown layer kind {layer.kind!r}; expected 'dense', 'conv' or 'lstm'")
            out_size = int(np.prod(out_shape))
            row[T_IN], row[T_IN_SIZE] = in_off, in_size
            # An LSTM's area also holds its cell, tanh(cell), gates and incoming state: 9H numbers.
            area = LSTM_AREA * out_size if row[T_KIND] == LSTM else out_size
            row[T_OUT], row[T_OUT_SIZE] = add_output(area), out_size
            if row[T_KIND] == LSTM:
                self.state_areas.append((int(row[T_OUT]) + LSTM_H_IN * out_size, 2 * out_size))
            row[T_NEED_DX] = 0 if in_off == INPUT else 1
            rows.append(row)
            shape, in_off, in_size, in_name = out_shape, int(row[T_OUT]), out_size, name

        def add_head(name, n_out, activation="linear", head=True):
            row = np.zeros(T_COLUMNS, np.int64)
            row[T_KIND], row[T_ACT] = DENSE, ACTIVATIONS[activation]
            row[T_W] = add_param(f"{name}/W", (in_size, n_out))
            row[T_B] = add_param(f"{name}/b", (n_out,))
            row[T_IN], row[T_IN_SIZE] = in_off, in_size
            row[T_OUT], row[T_OUT_SIZE] = add_output(n_out), n_out
            row[T_NEED_DX] = 0 if in_off == INPUT else 1
            rows.append(row)
            self.layers.append(dict(name=name, type="dense", activation=activation, stride=1, kernel=0,
                                    input=in_name, input_shape=(in_size,), output_shape=(n_out,),
                                    **({"head": True} if head else {})))
            return int(row[T_OUT])

        def value_tower():
            """``separate_value``: dense layers vfc1, vfc2, … of the body's sizes, from the observation,
            for the value head alone (the policy keeps the body); returns where V's input is."""
            nonlocal in_off, in_size, in_name
            if any(layer.kind != "dense" for layer in spec.body):
                raise ValueError("separate_value needs a dense body (an MLP)")
            src = (INPUT, self.input_size, "observation")
            for j, layer in enumerate(spec.body):
                in_off, in_size, in_name = src
                name = f"vfc{j + 1}"
                src = (add_head(name, int(layer.size), layer.activation, head=False), int(layer.size), name)
            return src

        self.out_q = self.out_pi = self.out_v = self.out_mu = self.out_sigma = self.out_action = -1
        if spec.heads == "q":
            self.out_q = add_head("q", spec.n_actions)
        elif spec.heads == "gaussian":
            if not len(spec.action_low) == len(spec.action_high) == spec.n_actions:
                raise ValueError(f"a gaussian head needs {spec.n_actions} action bounds; got "
                                 f"{len(spec.action_low)} low and {len(spec.action_high)} high")
            self.out_mu = add_head("mu", spec.n_actions)
            self.out_sigma = add_head("sigma", spec.n_actions)
            if spec.separate_value:
                in_off, in_size, in_name = value_tower()
            self.out_v = add_head("v", 1)
        else:
            self.out_pi = add_head("pi", spec.n_actions)
            if spec.separate_value:
                in_off, in_size, in_name = value_tower()
            self.out_v = add_head("v", 1)

        # Everything before this offset is a layer output (what backward must zero in ``delta``);
        # after it come the conv layers' patch matrices.
        self.activation_size = ws
        if spec.heads == "gaussian":
            self.out_action = add_output(spec.n_actions)
        for index, size in cols_requests:
            rows[index][T_COLS] = add_output(size)
        self.table = np.stack(rows)
        self.n_params = n_params
        self.workspace_size = ws
        self._by_name = {p.name: p for p in self.params}
        self.state_size = sum(size for _, size in self.state_areas)

    @property
    def recurrent(self):
        """True when the network has an LSTM layer (its output depends on the state it carries)."""
        return bool(self.state_areas)

    def get_state(self, ws_row):
        """The incoming recurrent state of a workspace row: every LSTM's (h, c), concatenated (state_size,)."""
        parts = [ws_row[off:off + size] for off, size in self.state_areas]
        return np.concatenate(parts) if parts else np.zeros(0, ws_row.dtype)

    def set_state(self, ws_row, state):
        """Write ``state`` (as :meth:`get_state` returns it) as the incoming recurrent state of ``ws_row``."""
        k = 0
        for off, size in self.state_areas:
            ws_row[off:off + size] = state[k:k + size]
            k += size

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, dtype=np.float32, scheme="uniform"):
        """A new flat parameter array, initialised with ``scheme`` (see the module docstring).

        ``"uniform"``: W ~ U(−1/√fan_in, 1/√fan_in), the paper's Torch7 default; ``pi/W`` (and the
        Gaussian mean's ``mu/W``) × 0.01. An LSTM's W and U are initialised like a linear layer's W
        (U's fan_in is H) and its forget-gate bias starts at 1 (:func:`numba_a3c.nn.lstm.lstm_init`).
        ``"orthogonal"``: W = gain · Q, Q a random orthogonal (fan_in × fan_out) matrix (a conv
        layer's W is reshaped to fan_out × fan_in first), gain √2 for ReLU layers, 1 for tanh
        and linear ones, 0.01 for ``pi/W`` and ``mu/W`` and 1 for the value, σ and Q heads. Every bias
        is 0 (so σ² starts at softplus(0) + VAR_MIN ≈ 0.69 in the unit action box).
        """
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; expected one of {INIT_SCHEMES}")
        rng = np.random.Generator(np.random.PCG64(seed))
        theta = np.zeros(self.n_params, dtype=dtype)
        gains = {layer["name"]: INIT_GAINS[layer["activation"]] for layer in self.layers}
        kinds = {layer["name"]: layer["type"] for layer in self.layers}
        for p in self.params:
            if not (p.name.endswith("/W") or p.name.endswith("/U")):
                continue
            layer = p.name[:-2]
            fan_in = int(np.prod(p.shape[1:])) if len(p.shape) == 4 else p.shape[0]
            if scheme == "uniform":
                bound = 1.0 / np.sqrt(fan_in)
                w = rng.uniform(-bound, bound, size=p.size)
                if layer in ("pi", "mu"):
                    w *= 0.01
            else:
                gain = 0.01 if layer in ("pi", "mu") else gains[layer]
                fan_out = p.size // fan_in
                w = gain * _orthogonal(rng, fan_in, fan_out)           # (fan_in, fan_out)
                w = w.T.ravel() if len(p.shape) == 4 else w.ravel()     # conv W is (out, in, kh, kw)
            theta[p.offset:p.offset + p.size] = w
        for name, kind in kinds.items():
            if kind == "lstm":      # the forget gate's bias starts at 1 (nn/lstm.py; gate order i, f, g, o)
                b = self.view(theta, f"{name}/b")
                H = b.shape[0] // 4
                b[H:2 * H] = FORGET_BIAS
        return theta

    def view(self, flat, name):
        """The tensor ``name`` ("conv1/W", "v/b", …) as a view (not a copy) into ``flat``."""
        try:
            p = self._by_name[name]
        except KeyError:
            raise KeyError(f"no parameter {name!r}; this network has {', '.join(self._by_name)}") from None
        return flat[p.offset:p.offset + p.size].reshape(p.shape)

    def views(self, flat):
        """All named tensors of ``flat`` as views, in layer order."""
        return {p.name: self.view(flat, p.name) for p in self.params}

    # ------------------------------------------------------------------ buffers
    def buffers(self, rows, dtype=np.float32):
        """(obs, ws, delta) arrays for ``rows`` samples."""
        return (np.zeros((rows, self.input_size), dtype), np.zeros((rows, self.workspace_size), dtype),
                np.zeros((rows, self.workspace_size), dtype))

    def backward_scratch(self, rows, dtype=np.float32):
        """The scratch array :func:`backward_rows` takes, for segments of up to ``rows`` rows
        (zeros; a worker allocates it once, with its learner)."""
        return np.zeros(backward_scratch_size(self.table, rows), dtype)

    def forward(self, params, observations):
        """Convenience forward pass of a batch (Python API; the workers use the kernels directly).

        Returns Q-values (B, A) for a "q" network, (logits (B, A), values (B,)) for an
        actor-critic one, or (μ (B, D), σ² (B, D), values (B,)) for a "gaussian" one.
        """
        x = np.asarray(observations).reshape(-1, self.input_size)
        obs, ws, _ = self.buffers(x.shape[0], params.dtype)
        obs[:] = x * np.asarray(self.spec.input_scale, params.dtype)
        for i in range(x.shape[0]):
            forward_row(self.table, params, obs, ws, i)
        return self.outputs(ws)

    def outputs(self, ws):
        """Head outputs read from workspace rows: Q (B, A), (logits (B, A), V (B,)) or (μ, σ², V)."""
        A = self.spec.n_actions
        if self.out_q >= 0:
            return ws[:, self.out_q:self.out_q + A].copy()
        if self.out_mu >= 0:
            s = ws[:, self.out_sigma:self.out_sigma + A].astype(np.float64)
            var = np.logaddexp(0.0, s) + float(VAR_MIN)
            return ws[:, self.out_mu:self.out_mu + A].copy(), var.astype(ws.dtype), ws[:, self.out_v].copy()
        return ws[:, self.out_pi:self.out_pi + A].copy(), ws[:, self.out_v].copy()


# ====================================================================== whole-network kernels
@njit(nogil=True, cache=True, error_model="numpy")
def forward_row(table, params, obs, ws, row):
    """Forward pass of the observation ``obs[row]``, writing every layer's output into ``ws[row]``.

    For each layer of the table, in order: Z = layer(input; W, b), then Y = activation(Z) in
    place. Conv layers also leave their im2col patch matrix in ``ws[row]`` for the backward pass.
    An LSTM layer steps from the state (h_{t−1}, c_{t−1}) kept in ``ws[row]`` (row 0: the state the
    segment started from) and, when ``ws`` has a next row, writes (h_t, c_t) there as that row's
    incoming state: consecutive rows are consecutive steps of one episode.
    """
    x = obs[row]
    h = ws[row]
    for l in range(table.shape[0]):
        in_off = table[l, T_IN]
        n_in = table[l, T_IN_SIZE]
        out_off = table[l, T_OUT]
        n_out = table[l, T_OUT_SIZE]
        w_off = table[l, T_W]
        b_off = table[l, T_B]
        if table[l, T_KIND] == DENSE:
            W = params[w_off:w_off + n_in * n_out].reshape((n_in, n_out))
            b = params[b_off:b_off + n_out]
            z = h[out_off:out_off + n_out]
            if in_off == INPUT:
                dense_forward(x[0:n_in], W, b, z)
            else:
                dense_forward(h[in_off:in_off + n_in], W, b, z)
        elif table[l, T_KIND] == CONV:
            C, H, Wd, O = table[l, T_C], table[l, T_H], table[l, T_WD], table[l, T_O]
            kh, kw, s = table[l, T_KH], table[l, T_KW], table[l, T_STRIDE]
            K = C * kh * kw
            P = table[l, T_HO] * table[l, T_WO]
            Wm = params[w_off:w_off + O * K].reshape((O, K))
            b = params[b_off:b_off + O]
            cols = h[table[l, T_COLS]:table[l, T_COLS] + K * P].reshape((K, P))
            z = h[out_off:out_off + n_out]
            if in_off == INPUT:
                conv2d_forward(x, C, H, Wd, Wm, b, kh, kw, s, cols, z)
            else:
                conv2d_forward(h[in_off:in_off + n_in], C, H, Wd, Wm, b, kh, kw, s, cols, z)
        else:
            # LSTM: one step from the state in this row's h_{t−1}, c_{t−1} area (nn/lstm.py).
            Hc = n_out
            W = params[w_off:w_off + n_in * 4 * Hc].reshape((n_in, 4 * Hc))
            u_off = table[l, T_U]
            U = params[u_off:u_off + Hc * 4 * Hc].reshape((Hc, 4 * Hc))
            b = params[b_off:b_off + 4 * Hc]
            a = out_off
            if in_off == INPUT:
                xin = x[0:n_in]
            else:
                xin = h[in_off:in_off + n_in]
            lstm_forward(xin, W, U, b,
                         h[a + LSTM_H_IN * Hc:a + LSTM_C_IN * Hc], h[a + LSTM_C_IN * Hc:a + LSTM_AREA * Hc],
                         h[a + LSTM_GATES * Hc:a + LSTM_H_IN * Hc], h[a + LSTM_C * Hc:a + LSTM_TC * Hc],
                         h[a + LSTM_TC * Hc:a + LSTM_GATES * Hc], h[a:a + Hc])
            if row + 1 < ws.shape[0]:
                # The next row (the next step of the segment) starts from (h_t, c_t).
                for j in range(Hc):
                    ws[row + 1, a + LSTM_H_IN * Hc + j] = h[a + j]
                    ws[row + 1, a + LSTM_C_IN * Hc + j] = h[a + LSTM_C * Hc + j]
        act = table[l, T_ACT]
        if act == ACT_RELU:
            relu_forward(h[out_off:out_off + n_out])
        elif act == ACT_TANH:
            tanh_forward(h[out_off:out_off + n_out])


@njit(nogil=True, cache=True, error_model="numpy")
def carry_state(table, ws, src, dst):
    """``ws[dst]``'s incoming recurrent state ← ``ws[src]``'s, for every LSTM layer (nothing for a
    feed-forward network). A3C carries row n's (the state after the segment's last step) to row 0."""
    for l in range(table.shape[0]):
        if table[l, T_KIND] == LSTM:
            Hc = table[l, T_OUT_SIZE]
            a = table[l, T_OUT] + LSTM_H_IN * Hc
            for j in range(2 * Hc):
                ws[dst, a + j] = ws[src, a + j]


@njit(nogil=True, cache=True, error_model="numpy")
def keep_state(table, ws, row):
    """``ws[row]``'s incoming state ← the state (h_t, c_t) its own step produced: a one-row
    workspace (evaluation, acting one observation at a time) moves on to the next step."""
    for l in range(table.shape[0]):
        if table[l, T_KIND] == LSTM:
            Hc = table[l, T_OUT_SIZE]
            a = table[l, T_OUT]
            for j in range(Hc):
                ws[row, a + LSTM_H_IN * Hc + j] = ws[row, a + LSTM_H * Hc + j]
                ws[row, a + LSTM_C_IN * Hc + j] = ws[row, a + LSTM_C * Hc + j]


@njit(nogil=True, cache=True, error_model="numpy")
def reset_state(table, ws, row):
    """``ws[row]``'s incoming recurrent state ← 0 (h = c = 0): where an episode starts."""
    for l in range(table.shape[0]):
        if table[l, T_KIND] == LSTM:
            Hc = table[l, T_OUT_SIZE]
            a = table[l, T_OUT] + LSTM_H_IN * Hc
            for j in range(2 * Hc):
                ws[row, a + j] = 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def _gather(src, off, size, n, dst):
    """dst (n, size) ← src[0:n, off:off + size]: a contiguous copy of one layer's rows."""
    for i in range(n):
        for j in range(size):
            dst[i, j] = src[i, off + j]


@njit(nogil=True, cache=True, error_model="numpy")
def backward_scratch_size(table, n_rows):
    """How many numbers of scratch :func:`backward_rows` needs for ``n_rows`` rows (the most any
    one layer needs; the layers use it one after the other):

    * dense: the rows' inputs X, output gradients dZ and input gradients dX, n·(2·n_in + n_out);
    * conv (K = C·kh·kw): one row's weight gradient, K·O (its dcols lives in ``delta``'s patch area);
    * LSTM (H cells): what :func:`_lstm_rows_backward` gathers, n·(2·n_in + 10H) + 2(n+1)H + 2H.
    """
    n = n_rows
    size = 1
    for l in range(table.shape[0]):
        n_in = table[l, T_IN_SIZE]
        n_out = table[l, T_OUT_SIZE]
        if table[l, T_KIND] == DENSE:
            need = n * (2 * n_in + n_out)
        elif table[l, T_KIND] == LSTM:
            need = n * (2 * n_in + 10 * n_out) + 2 * (n + 1) * n_out + 2 * n_out
        else:
            need = table[l, T_C] * table[l, T_KH] * table[l, T_KW] * table[l, T_O]
        size = max(size, need)
    return size


@njit(nogil=True, cache=True, error_model="numpy")
def backward_rows(table, params, grads, obs, ws, delta, n_rows, scratch):
    """Backpropagate through rows 0..n_rows−1 at once, accumulating into ``grads``.

    On entry ``delta[:n_rows]`` is zero except at the head outputs, where the loss kernel wrote
    ∂L/∂(head outputs). Layers are visited in reverse: the activation's backward turns ∂L/∂Y into
    ∂L/∂Z in place, then the layer's backward adds ∂L/∂W, ∂L/∂b into ``grads`` (same flat layout
    as ``params``) and ∂L/∂X into the ``delta`` of its input. Dense layers process all rows in one
    call, on contiguous copies of their rows (their weights are read once per segment); conv
    layers go row by row through BLAS, reusing the patch matrices left by the forward pass (a
    segment-wide product would need those matrices side by side, and copying them there cost more
    than it saved: docs/kernels.md). An LSTM layer backpropagates through time over the rows
    (:func:`_lstm_rows_backward`).

    ``scratch`` is a 1-D array of at least ``backward_scratch_size(table, n_rows)`` numbers of
    the dtype of ``params``, kept by the caller (a worker allocates it once, with its learner), so
    a segment's backward pass allocates nothing. Its content on entry does not matter: what a
    kernel accumulates into is zeroed here first.
    """
    n = n_rows
    if scratch.shape[0] < backward_scratch_size(table, n):
        raise ValueError("backward_rows: scratch is smaller than backward_scratch_size(table, n_rows)")
    for l in range(table.shape[0] - 1, -1, -1):
        in_off = table[l, T_IN]
        n_in = table[l, T_IN_SIZE]
        out_off = table[l, T_OUT]
        n_out = table[l, T_OUT_SIZE]
        w_off = table[l, T_W]
        b_off = table[l, T_B]
        act = table[l, T_ACT]
        need_dx = table[l, T_NEED_DX] != 0
        if act == ACT_RELU:
            for i in range(n):
                relu_backward(ws[i, out_off:out_off + n_out], delta[i, out_off:out_off + n_out])
        elif act == ACT_TANH:
            for i in range(n):
                tanh_backward(ws[i, out_off:out_off + n_out], delta[i, out_off:out_off + n_out])
        if table[l, T_KIND] == DENSE:
            W = params[w_off:w_off + n_in * n_out].reshape((n_in, n_out))
            dW = grads[w_off:w_off + n_in * n_out].reshape((n_in, n_out))
            db = grads[b_off:b_off + n_out]
            X = scratch[0:n * n_in].reshape((n, n_in))
            dZ = scratch[n * n_in:n * (n_in + n_out)].reshape((n, n_out))
            dX = scratch[n * (n_in + n_out):n * (2 * n_in + n_out)].reshape((n, n_in))
            _gather(delta, out_off, n_out, n, dZ)
            if in_off == INPUT:
                _gather(obs, 0, n_in, n, X)
                dense_backward(X, W, dZ, dW, db, dX, False)
            else:
                _gather(ws, in_off, n_in, n, X)
                if need_dx:
                    dX[:] = 0.0     # dense_backward accumulates into dX
                dense_backward(X, W, dZ, dW, db, dX, need_dx)
                if need_dx:
                    for i in range(n):
                        for j in range(n_in):
                            delta[i, in_off + j] += dX[i, j]
        elif table[l, T_KIND] == LSTM:
            _lstm_rows_backward(table[l], params, grads, obs, ws, delta, n, scratch)
        else:
            C, H, Wd, O = table[l, T_C], table[l, T_H], table[l, T_WD], table[l, T_O]
            kh, kw, s = table[l, T_KH], table[l, T_KW], table[l, T_STRIDE]
            K = C * kh * kw
            P = table[l, T_HO] * table[l, T_WO]
            Wm = params[w_off:w_off + O * K].reshape((O, K))
            dWm = grads[w_off:w_off + O * K].reshape((O, K))
            db = grads[b_off:b_off + O]
            gWt = scratch[0:K * O].reshape((K, O))
            c0 = table[l, T_COLS]
            for i in range(n):
                h = ws[i]
                d = delta[i]
                cols = h[c0:c0 + K * P].reshape((K, P))
                dcols = d[c0:c0 + K * P].reshape((K, P))
                dz = d[out_off:out_off + n_out]
                if in_off == INPUT:
                    conv2d_backward(cols, C, H, Wd, Wm, kh, kw, s, dz, dWm, db, gWt, dcols, dz, False)
                else:
                    conv2d_backward(cols, C, H, Wd, Wm, kh, kw, s, dz, dWm, db, gWt, dcols,
                                    d[in_off:in_off + n_in], need_dx)


@njit(nogil=True, cache=True, error_model="numpy")
def _lstm_rows_backward(row, params, grads, obs, ws, delta, n, scratch):
    """BPTT of one LSTM layer (table row ``row``) over the segment's rows 0..n−1.

    Gathers what :func:`numba_a3c.nn.lstm.lstm_backward` takes from the workspace rows: the
    inputs X, the states Hs, Cs (row t: the state step t started from, kept in ``ws[t]``; row 0
    is the state the segment started from), the gates and tanh(c), and ∂L/∂h_t from
    ``delta`` (what the heads sent back); adds ∂L/∂x_t to the input layer's ``delta``. The
    gradient reaching the segment's initial state is dropped: truncated BPTT. Every array lives
    in ``scratch`` (see :func:`backward_scratch_size`); dX, which the kernel accumulates into,
    is zeroed here, and dh0, dc0 too although the kernel assigns them; the gates' gradients dZ
    get their own rows.
    """
    Hc = row[T_OUT_SIZE]
    G4 = 4 * Hc
    n_in = row[T_IN_SIZE]
    in_off = row[T_IN]
    a = row[T_OUT]
    w_off, u_off, b_off = row[T_W], row[T_U], row[T_B]
    need_dx = row[T_NEED_DX] != 0
    W = params[w_off:w_off + n_in * G4].reshape((n_in, G4))
    U = params[u_off:u_off + Hc * G4].reshape((Hc, G4))
    dW = grads[w_off:w_off + n_in * G4].reshape((n_in, G4))
    dU = grads[u_off:u_off + Hc * G4].reshape((Hc, G4))
    db = grads[b_off:b_off + G4]
    k = 0
    X = scratch[k:k + n * n_in].reshape((n, n_in))
    k += n * n_in
    dX = scratch[k:k + n * n_in].reshape((n, n_in))
    k += n * n_in
    Hs = scratch[k:k + (n + 1) * Hc].reshape((n + 1, Hc))
    k += (n + 1) * Hc
    Cs = scratch[k:k + (n + 1) * Hc].reshape((n + 1, Hc))
    k += (n + 1) * Hc
    G = scratch[k:k + n * G4].reshape((n, G4))
    k += n * G4
    TC = scratch[k:k + n * Hc].reshape((n, Hc))
    k += n * Hc
    dH = scratch[k:k + n * Hc].reshape((n, Hc))
    k += n * Hc
    dZ = scratch[k:k + n * G4].reshape((n, G4))
    k += n * G4
    dh0 = scratch[k:k + Hc]
    dc0 = scratch[k + Hc:k + 2 * Hc]
    dX[:] = 0.0       # lstm_backward accumulates into dX (as 0·dX + …: it must not start from NaN)
    dh0[:] = 0.0
    dc0[:] = 0.0
    if in_off == INPUT:
        _gather(obs, 0, n_in, n, X)
    else:
        _gather(ws, in_off, n_in, n, X)
    for t in range(n):
        for j in range(Hc):
            Hs[t, j] = ws[t, a + LSTM_H_IN * Hc + j]       # the state step t started from
            Cs[t, j] = ws[t, a + LSTM_C_IN * Hc + j]
            TC[t, j] = ws[t, a + LSTM_TC * Hc + j]
            dH[t, j] = delta[t, a + LSTM_H * Hc + j]
        for j in range(G4):
            G[t, j] = ws[t, a + LSTM_GATES * Hc + j]
    for j in range(Hc):                                    # the state after the last step
        Hs[n, j] = ws[n - 1, a + LSTM_H * Hc + j]
        Cs[n, j] = ws[n - 1, a + LSTM_C * Hc + j]
    lstm_backward(X, W, U, Hs, Cs, G, TC, dH, dW, dU, db, dX, dh0, dc0, dZ, need_dx)
    if need_dx:
        for t in range(n):
            for j in range(n_in):
                delta[t, in_off + j] += dX[t, j]
