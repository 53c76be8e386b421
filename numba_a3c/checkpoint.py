"""HDF5 checkpoints: everything needed to inspect, evaluate, resume or reuse a run.

Format version 1 (see docs/checkpoint-format.md for the reader's guide)::

    /                      attrs: format = "numba_a3c checkpoint", format_version = 1, created (ISO 8601),
                                  numba_a3c_version, numba_version, numpy_version, h5py_version, python_version
    /config                attrs: one per TrainConfig field, plus "json" (the whole configuration)
    /network               attrs: spec_json, layer_order (names, input to output), input_shape,
                                  input_scale, heads, n_actions, n_params; a Gaussian policy ("gaussian"
                                  heads) also action_low, action_high (the Box bounds)
    /params/<layer>/W, b   float32 datasets in their natural shapes; group attrs: type ("dense" |
                           "conv"), activation ("relu" | "tanh" | "linear"), stride, kernel, index,
                           input (the layer it reads, or "observation"), input_shape, output_shape
                           dense: y = act(x @ W + b), W (in, out)
                           conv:  y = act(conv(x, W) + b), W (out, in, kh, kw), x (C, H, W), valid padding
                           lstm:  W (in, 4H), U (H, 4H), b (4H,); attrs cells = H, gate_order = "ifgo":
                                  z = x W + h U + b; i, f, o = σ(z_i, z_f, z_o), g = tanh(z_g);
                                  c ← f c + i g; h ← o tanh(c) (the output); h = c = 0 at an episode's start
    /target_params/...     the target network θ⁻, same layout (Q methods only)
    /optimizer             attrs: kind; datasets: g (shared RMSProp statistics, flat) and/or
                           per_thread (threads, n_params: per-thread RMSProp g or momentum m);
                           in a copy made by :func:`copy_without_optimizer` both are empty and the
                           attr ``omitted`` says so (a resume starts the statistics from zero)
    /state                 attrs: global_step, wall_time, threads; datasets: counters, thread_int,
                           thread_float (per-thread counters and statistics, column names in attrs),
                           rng, env_rng (xoroshiro128+ states), env_state, observation (each
                           thread's current observation); recurrent networks also recurrent_state
                           (threads, Σ 2H): each thread's (h, c) of every LSTM, in layer order
    /normalizer            written when --normalize-obs or --normalize-reward was on (numba_a3c/normalize.py):
                           attrs observations, rewards (bool: which is applied), obs_clip, reward_clip,
                           epsilon, gamma, obs_count, return_count, return_mean, return_var; datasets
                           obs_mean, obs_var (D,) float64 (empty when observations are not
                           normalised), thread_return (threads,) float64: each thread's discounted R.
                           The network reads clip((x − obs_mean) / √(obs_var + epsilon), ±obs_clip)
    /value_scale           written when --normalize-value was on (A3C): attrs mean, std (the value is
                           V = std · v + mean, v the output of the head ``v``), count, second_moment,
                           rate, std_min: the moving statistics of the returns
    /log/episodes          (n, 5) float64, appendable, gzip: global_step, thread, return, length, wall_time;
                           attrs log_first_row, csv_rows, csv_bytes (below)
    /log/evaluations       (n, 7) float64, appendable: global_step, mean, std, min, max, episodes, wall_time

A run with a run directory appends its whole episode log to ``episodes.csv`` and keeps only
the last rows (``numba_a3c.episode_log.TAIL``) in /log/episodes: ``log_first_row`` is the index
in the whole log of its first row, and ``csv_rows``/``csv_bytes`` how many rows of the whole log
and bytes episodes.csv held when the checkpoint was written. :func:`load` puts the whole log
back together from the two (``whole_log=True``); a checkpoint without these attributes holds
its whole log itself.

Saving is atomic: the file is written beside its destination under a temporary name, flushed
to disk, then renamed over it, so a crash or a full disk never leaves a broken checkpoint where
a good one was.
"""

import contextlib
import datetime
import hashlib
import io
import json
import os
import platform
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numba_a3c.algorithms.state import CF_VALUE_RATE, CI_NORMALIZE_VALUE
from numba_a3c.episode_log import EPISODE_COLUMNS, read_rows

FORMAT_NAME = "numba_a3c checkpoint"
FORMAT_VERSION = 1
EVALUATION_COLUMNS = ("global_step", "mean", "std", "min", "max", "episodes", "wall_time")


MAX_EXPANSION = 1100   # bytes of data per byte of file a dataset can hold at most (gzip's limit is ~1,032)

# The file's first USERBLOCK bytes are an HDF5 user block (HDF5 and h5py skip it): CHECKSUM_MAGIC,
# then the SHA-256 of every byte after the block, in hex, then zeros. load() checks it before the
# HDF5 library reads anything, so a damaged or truncated file is a one-line error, never a crash
# inside the library (a fuzzed file once made it segfault). Files without the magic (written
# before the block existed) are read unchecked.
USERBLOCK = 512
CHECKSUM_MAGIC = b"numba_a3c checkpoint sha256 "


def _checksum_header(body):
    """The user block for a file whose bytes after it are ``body``."""
    header = CHECKSUM_MAGIC + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n"
    return header + bytes(USERBLOCK - len(header))


def _verify_checksum(path):
    """CheckpointError if ``path`` has a checksum block that does not match the bytes after it."""
    with open(path, "rb") as fh:
        head = fh.read(USERBLOCK)
        if not head.startswith(CHECKSUM_MAGIC):
            return
        body = fh.read()
    if len(head) < USERBLOCK or _checksum_header(body) != head:
        raise CheckpointError(f"{path} is damaged: its SHA-256 checksum does not match its contents (truncated, "
                              f"overwritten, or edited after asyncrl wrote it); use another checkpoint, e.g. best.h5 "
                              f"or an earlier one (after an edit on purpose, numba_a3c.checkpoint.reseal(PATH))")


def reseal(path):
    """Accept the present contents of the checkpoint ``path``: write the checksum of its bytes into its
    user block. For a file changed on purpose with h5py (which keeps the block but not the sum)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if not data.startswith(CHECKSUM_MAGIC) or len(data) < USERBLOCK:
        raise CheckpointError(f"{path} has no checksum block to reseal (written before checksums, or not a "
                              f"numba_a3c checkpoint)")
    data[:USERBLOCK] = _checksum_header(bytes(data[USERBLOCK:]))
    with _atomic(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message says why and what to do."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint, as loaded by :func:`load`."""

    config: object            # TrainConfig
    spec: object              # NetworkSpec
    theta: np.ndarray
    theta_target: np.ndarray | None
    opt_shared: np.ndarray
    opt_private: np.ndarray
    counters: np.ndarray
    thread_i: np.ndarray
    thread_f: np.ndarray
    rng: np.ndarray
    env_rng: np.ndarray
    env_state: np.ndarray
    observation: np.ndarray
    episodes: np.ndarray
    evaluations: np.ndarray
    wall_time: float
    attrs: dict
    recurrent_state: np.ndarray | None = None   # (threads, Σ 2H), recurrent networks only
    norm_stats: np.ndarray | None = None        # numba_a3c.normalize's shared statistics (S_* layout), or None
    norm_config: np.ndarray | None = None       # its settings (NC_* layout)
    norm_ret: np.ndarray | None = None          # (threads, 1): each thread's discounted return R
    value_stats: np.ndarray | None = None       # --normalize-value's return statistics (VS_* layout), or None

    def frozen_observations(self):
        """The observation normalisation this checkpoint's policy expects
        (:class:`numba_a3c.normalize.FrozenObservations`), or None."""
        from numba_a3c.normalize import FrozenObservations

        return None if self.norm_stats is None else FrozenObservations.from_stats(self.norm_stats, self.norm_config)

    @property
    def global_step(self):
        from numba_a3c.algorithms.state import C_T

        return int(self.counters[C_T])


@contextlib.contextmanager
def _atomic(path):
    """Write ``path`` atomically: yields the name of a new temporary file beside it (closed, to be
    written and closed inside the ``with``), which then replaces ``path`` (:func:`_publish`). On any
    exception, a signal's KeyboardInterrupt included, the temporary file is removed instead and
    ``path`` is left as it was."""
    # The name is chosen before the file exists, so an interrupt at any moment after this line
    # (even between creating the file and returning from the call that created it) knows what to remove.
    tmp = os.path.join(path.parent, f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield tmp
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _new_hdf5_file(path):
    """Yield a new, empty h5py File to fill; when the ``with`` ends without an exception, its bytes
    are written to ``path`` atomically (:func:`_atomic`).

    HDF5 builds the file in memory (h5py on a BytesIO) and Python writes it to disk. A write that
    fails underneath (a full disk) is then an ordinary OSError from ``write``, and the HDF5
    library never holds a half-written file: when it did (h5py writing the temporary file itself),
    a full disk left file objects whose destructors printed "Exception ignored" tracebacks, and
    the process sometimes crashed with SIGSEGV at exit."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w", userblock_size=USERBLOCK) as f:
        yield f
    data = buffer.getbuffer()
    data[:USERBLOCK] = _checksum_header(data[USERBLOCK:])
    with _atomic(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def _publish(tmp, path):
    """Give the temporary file the usual permissions, flush it to disk and rename it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _versions():
    import h5py
    import numba

    from numba_a3c import __version__

    return dict(numba_a3c_version=__version__, numba_version=numba.__version__, numpy_version=np.__version__,
                h5py_version=h5py.__version__, python_version=platform.python_version())


def _write_params(group, network, flat):
    order = []
    by_layer = {}
    for p in network.params:
        layer, tensor = p.name.split("/")
        by_layer.setdefault(layer, {})[tensor] = p
    for index, layer in enumerate(network.layers):
        name = layer["name"]
        order.append(name)
        g = group.create_group(name)
        g.attrs["type"] = layer["type"]
        g.attrs["activation"] = layer["activation"]
        g.attrs["stride"] = int(layer["stride"])
        g.attrs["kernel"] = int(layer["kernel"])
        g.attrs["index"] = index
        g.attrs["input_shape"] = np.asarray(layer["input_shape"], np.int64)
        g.attrs["output_shape"] = np.asarray(layer["output_shape"], np.int64)
        g.attrs["input"] = layer["input"]
        if layer["type"] == "lstm":
            g.attrs["cells"] = int(layer["cells"])
            g.attrs["gate_order"] = layer["gate_order"]
        for tensor, p in by_layer[name].items():
            g.create_dataset(tensor, data=flat[p.offset:p.offset + p.size].reshape(p.shape))
    return order


def _read_params(group, network):
    flat = np.zeros(network.n_params, np.float32)
    for p in network.params:
        layer, tensor = p.name.split("/")
        if layer not in group or tensor not in group[layer]:
            raise CheckpointError(f"the checkpoint has no dataset {group.name}/{p.name}; it is incomplete")
        ds = group[layer][tensor]
        if ds.shape != p.shape:
            raise CheckpointError(f"{group.name}/{p.name} has shape {ds.shape}, expected {p.shape}")
        data = ds[()]
        flat[p.offset:p.offset + p.size] = data.reshape(-1)
    return flat


def save(path, *, config, network, shared, episodes, evaluations, wall_time, at_rest=False, log_attrs=None):
    """Write a checkpoint of a run atomically to ``path``.

    ``shared`` is the run's :class:`numba_a3c.workers.SharedState`. ``at_rest`` says every worker
    had stopped at a segment boundary when it was read: such a checkpoint resumes exactly
    (environments included); one taken while workers ran is a Hogwild snapshot, and resuming it
    starts fresh episodes. ``episodes`` and ``evaluations`` are sequences of rows as above;
    ``log_attrs`` (log_first_row, csv_rows, csv_bytes) say where ``episodes`` sits in the run's
    whole log when it is only its tail.
    """
    import h5py

    from numba_a3c.algorithms.state import C_T, TF_SIZE, TI_SIZE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _new_hdf5_file(path) as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for k, v in _versions().items():
                f.attrs[k] = v
            cfg = f.create_group("config")
            d = config.to_dict()
            cfg.attrs["json"] = json.dumps(d)
            for k, v in d.items():
                if v is None:   # HDF5 has no null: "json" above keeps it (env_processes' default)
                    continue
                if isinstance(v, list) and all(isinstance(x, str) for x in v):
                    v = np.array(v, dtype=h5py.string_dtype())   # env_kwargs: HDF5 has no fixed-width unicode
                cfg.attrs[k] = np.asarray(v) if isinstance(v, list) else v
            net = f.create_group("network")
            spec = network.spec
            net.attrs["spec_json"] = json.dumps(spec.to_dict())
            net.attrs["input_shape"] = np.asarray(spec.input_shape, np.int64)
            net.attrs["input_scale"] = float(spec.input_scale)
            net.attrs["input_encoding"] = spec.input_encoding
            net.attrs["heads"] = spec.heads
            net.attrs["n_actions"] = int(spec.n_actions)
            if spec.heads == "gaussian":
                net.attrs["action_low"] = np.asarray(spec.action_low, np.float64)
                net.attrs["action_high"] = np.asarray(spec.action_high, np.float64)
            if spec.action_start:
                net.attrs["action_start"] = int(spec.action_start)
            net.attrs["n_params"] = int(network.n_params)
            order = _write_params(f.create_group("params"), network, shared.theta.copy())
            net.attrs["layer_order"] = np.asarray(order, dtype=h5py.string_dtype())
            if config.algo != "a3c":
                _write_params(f.create_group("target_params"), network, shared.theta_target.copy())
            opt = f.create_group("optimizer")
            opt.attrs["kind"] = config.optimizer
            opt.attrs["description"] = {
                "shared-rmsprop": "g <- a g + (1-a) d^2; theta <- theta - lr d / sqrt(g + eps); g shared",
                "rmsprop": "as shared-rmsprop with one g per thread (per_thread)",
                "momentum": "m <- a m + (1-a) d; theta <- theta - lr m; m per thread (per_thread)",
            }[config.optimizer]
            opt.create_dataset("g", data=shared.opt_shared.copy())
            opt.create_dataset("per_thread", data=shared.opt_private.copy())
            st = f.create_group("state")
            st.attrs["global_step"] = int(shared.counters[C_T])
            st.attrs["wall_time"] = float(wall_time)
            st.attrs["threads"] = int(shared.n_threads)
            st.attrs["at_rest"] = bool(at_rest)
            st.create_dataset("counters", data=shared.counters.copy())
            ti = st.create_dataset("thread_int", data=shared.thread_i.copy())
            ti.attrs["columns"] = np.asarray(_columns("TI_", TI_SIZE), dtype=h5py.string_dtype())
            tf = st.create_dataset("thread_float", data=shared.thread_f.copy())
            tf.attrs["columns"] = np.asarray(_columns("TF_", TF_SIZE), dtype=h5py.string_dtype())
            st.create_dataset("rng", data=shared.rng.copy())
            st.create_dataset("env_rng", data=shared.env_rng.copy())
            st.create_dataset("env_state", data=shared.env_state.copy())
            st.create_dataset("observation", data=shared.obs[:, 0].copy())
            if network.recurrent and shared.ws is not None:
                from numba_a3c.workers import recurrent_states

                rs = st.create_dataset("recurrent_state", data=recurrent_states(shared, network))
                rs.attrs["columns"] = np.asarray([f"{layer['name']}/{part}" for layer in network.layers
                                                  if layer["type"] == "lstm" for part in ("h", "c")],
                                                 dtype=h5py.string_dtype())
            if shared.norm_config is not None and (shared.norm_config[:2] != 0).any():
                from numba_a3c.normalize import write_group

                write_group(f.create_group("normalizer"), shared.norm_stats, shared.norm_config, shared.norm_ret)
            if shared.value_stats is not None and shared.config_i[CI_NORMALIZE_VALUE] != 0:
                from numba_a3c.normalize import write_value_group

                write_value_group(f.create_group("value_scale"), shared.value_stats, shared.config_f[CF_VALUE_RATE])
            log = f.create_group("log")
            ds = _log_dataset(log, "episodes", episodes, EPISODE_COLUMNS)
            for k, v in (log_attrs or {}).items():
                ds.attrs[k] = int(v)
            _log_dataset(log, "evaluations", evaluations, EVALUATION_COLUMNS)
            f.flush()
    except RuntimeError as exc:
        # h5py reports its own failures as RuntimeError (the file is built in memory, so not a
        # full disk: that is an OSError from the write); callers handle any failed save as OSError.
        raise OSError(f"could not write {path}: {str(exc).splitlines()[0]}") from None
    return path


def _columns(prefix, size):
    from numba_a3c.algorithms import state

    names = [""] * size
    for k, v in vars(state).items():
        if k.startswith(prefix) and k != prefix + "SIZE" and isinstance(v, int) and v < size:
            names[v] = k[len(prefix):].lower()
    return names


def _log_dataset(group, name, rows, columns):
    data = np.asarray(rows, np.float64).reshape(-1, len(columns))
    # Chunked (so it can grow) and gzip-compressed with the shuffle filter: the columns are
    # regular (steps, thread ids, ±1 returns) and shrink several-fold, which keeps the shipped
    # checkpoints small. gzip is built into every HDF5, so h5py, h5dump and HDFView read it.
    ds = group.create_dataset(name, data=data, maxshape=(None, len(columns)), chunks=(256, len(columns)),
                              compression="gzip", compression_opts=6, shuffle=True)
    ds.attrs["columns"] = np.asarray(columns, dtype="S")
    return ds


def latest_in(run_dir):
    """What a run directory offers to resume or inspect: ``(run_dir/latest.h5, [])`` when it has
    one, else ``(None, names of the .h5 files it does have)`` for the caller's error message."""
    run_dir = Path(run_dir)
    latest = run_dir / "latest.h5"
    if latest.is_file():
        return latest, []
    return None, sorted(p.name for p in run_dir.glob("*.h5"))


def write_csv(path, columns, rows):
    """Write rows as CSV with a header, atomically (temporary file, then rename)."""
    path = Path(path)
    with _atomic(path) as tmp, open(tmp, "w") as fh:
        fh.write(",".join(columns) + "\n")
        for row in rows:
            fh.write(",".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in row) + "\n")


OPTIMIZER_OMITTED = ("the optimizer statistics were left out of this copy to keep it small (it evaluates and "
                     "inspects like the run's own checkpoint); a resume starts them from zero")


def copy_without_optimizer(src, dest):
    """Write ``dest``: the checkpoint ``src`` without its optimizer statistics (the RMSProp g or
    momentum arrays, as large as θ itself, or N times larger per thread), the /optimizer attr
    ``omitted`` saying so, and every other dataset gzip-compressed. For shipping a trained
    agent: evaluation, inspection and the standalone reader need only θ. Written atomically.
    Returns ``dest`` as a Path."""
    import h5py

    load(src, whole_log=False)               # a one-line CheckpointError for anything unusable
    dest = Path(dest)

    def copy(source, target):
        copy_attrs(source, target)
        for name, item in source.items():
            if isinstance(item, h5py.Group):
                copy(item, target.create_group(name))
            elif source.name == "/optimizer":
                shape = (0,) if item.ndim == 1 else (item.shape[0], 0)
                copy_attrs(item, target.create_dataset(name, shape=shape, dtype=item.dtype))
            elif item.shape == () or item.size == 0:
                copy_attrs(item, target.create_dataset(name, data=item[()]))
            else:
                copy_attrs(item, target.create_dataset(name, data=item[()], compression="gzip",
                                                       chunks=True, maxshape=item.maxshape))

    def copy_attrs(source, target):
        for key, value in source.attrs.items():
            target.attrs[key] = value

    with h5py.File(src, "r") as f, _new_hdf5_file(dest) as out:
        copy(f, out)
        out["optimizer"].attrs["omitted"] = OPTIMIZER_OMITTED
    return dest


def load(path, whole_log=True):
    """Read a checkpoint; raises :class:`CheckpointError` with a one-line reason for any unusable file.

    With ``whole_log`` the episode log of a run that appended it to episodes.csv is read back from
    the episodes.csv beside the checkpoint (when it is there and long enough); without, or
    without that file, ``episodes`` is the tail the checkpoint holds (``attrs["log_first_row"]``
    says where it starts)."""
    import h5py

    from numba_a3c.config import TrainConfig
    from numba_a3c.nn.network import Network, NetworkSpec
    from numba_a3c.normalize import read_group, read_value_group

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the checkpoint file (e.g. {path}/latest.h5)")
    try:
        _verify_checksum(path)
        is_hdf5 = h5py.is_hdf5(path)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not is_hdf5:
        raise CheckpointError(f"{path} is not an HDF5 file; a numba_a3c checkpoint is an .h5 file written by "
                              f"'asyncrl train'")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path} is an HDF5 file but not a numba_a3c checkpoint (no format attribute "
                                      f"'{FORMAT_NAME}')")
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise CheckpointError(f"{path} has checkpoint format version {version}, newer than this numba_a3c "
                                      f"reads ({FORMAT_VERSION}); upgrade numba_a3c")
            if version < 1:
                raise CheckpointError(f"{path} has an invalid format_version {version}")
            config = TrainConfig.from_dict(json.loads(f["config"].attrs["json"]))
            spec = NetworkSpec.from_dict(json.loads(f["network"].attrs["spec_json"]))
            network = Network(spec)
            theta = _read_params(f["params"], network)
            target = _read_params(f["target_params"], network) if "target_params" in f else None
            st = f["state"]
            limit = MAX_EXPANSION * path.stat().st_size + 2**20

            def read(ds):
                # A damaged header can claim any shape; no real dataset holds more bytes than the
                # file could expand to (deflate cannot expand data more than about 1,032 times).
                if ds.size * ds.dtype.itemsize > limit:
                    raise CheckpointError(f"{path} is damaged: {ds.name} claims shape {ds.shape}, more data than the "
                                          f"file can hold; use another checkpoint, e.g. best.h5 or an earlier one")
                return ds[()]

            ckpt = Checkpoint(
                config=config, spec=spec, theta=theta, theta_target=target,
                opt_shared=read(f["optimizer/g"]), opt_private=read(f["optimizer/per_thread"]),
                counters=read(st["counters"]), thread_i=read(st["thread_int"]), thread_f=read(st["thread_float"]),
                rng=read(st["rng"]), env_rng=read(st["env_rng"]), env_state=read(st["env_state"]),
                observation=read(st["observation"]), episodes=read(f["log/episodes"]),
                evaluations=read(f["log/evaluations"]), wall_time=float(st.attrs["wall_time"]),
                recurrent_state=read(st["recurrent_state"]) if "recurrent_state" in st else None,
                **(dict(zip(("norm_stats", "norm_config", "norm_ret"), read_group(f["normalizer"])))
                   if "normalizer" in f else {}),
                value_stats=read_value_group(f["value_scale"]) if "value_scale" in f else None,
                attrs={**{k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()},
                       "at_rest": bool(st.attrs.get("at_rest", False)),
                       "optimizer_omitted": "omitted" in f["optimizer"].attrs,
                       **{k: int(f["log/episodes"].attrs.get(k, 0)) for k in ("log_first_row", "csv_rows",
                                                                               "csv_bytes")}},
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, MemoryError) as exc:
        # h5py raises RuntimeError for damaged metadata (object headers, links, attribute messages)
        raise CheckpointError(f"{path} is damaged or incomplete ({type(exc).__name__}: {exc}); use another "
                              f"checkpoint, e.g. best.h5 or an earlier one") from None
    if whole_log and ckpt.attrs["log_first_row"] > 0:
        ckpt.episodes = _whole_log(path, ckpt)
    return ckpt


def _whole_log(path, ckpt):
    """The run's whole episode log: episodes.csv up to the checkpoint's mark, then the rows of the
    checkpoint's tail not yet in it. The tail alone when episodes.csv is missing, short or unreadable."""

    csv = Path(path).parent / "episodes.csv"
    first, rows, size = (ckpt.attrs[k] for k in ("log_first_row", "csv_rows", "csv_bytes"))
    try:
        if not csv.is_file() or csv.stat().st_size < size:
            return ckpt.episodes
        head = read_rows(csv, size)
    except (OSError, ValueError):
        return ckpt.episodes
    tail = np.asarray(ckpt.episodes, np.float64).reshape(-1, 5)
    return np.concatenate([head, tail[max(0, rows - first):]])
