"""Looking inside checkpoints and evaluating them: what ``asyncrl inspect`` and ``asyncrl eval`` do.

Everything here works on a loaded :class:`numba_a3c.checkpoint.Checkpoint` and returns plain
Python data (dicts, lists, floats), so the same summary prints as text or as JSON.

* :func:`find_checkpoint` turns what a user typed into a file: a checkpoint, a run directory
  (its ``latest.h5``), or the name of a checkpoint shipped in ``numba_a3c/data/checkpoints``.
* :func:`summarize` gives the configuration, progress, per-tensor statistics (mean, standard
  deviation, min, max and L2 norm ‖w‖₂ = √Σw²), optimizer statistics, the learning curve binned
  over the global step and the last evaluations.
* :func:`format_summary` renders it for a terminal, with the learning curve drawn in text by
  :func:`text_plot`; :func:`plot_learning_curve` draws it with matplotlib.
* :func:`evaluate_checkpoint` plays episodes with the saved policy, optionally recording the
  frames of the first one, and :func:`write_gif` saves them with pillow.
"""

import math
import warnings
from pathlib import Path

import numpy as np

from numba_a3c.checkpoint import CheckpointError, latest_in

SHIPPED_SUFFIX = ".h5"


class InspectError(ValueError):
    """A request that cannot be answered (an unknown layer name, a missing optional extra…);
    the message is one line that says what to do."""


# ---------------------------------------------------------------------- finding checkpoints
def shipped_dir():
    from numba_a3c.data import data_path

    return data_path("checkpoints")


def shipped_checkpoints():
    """{name: path} of the checkpoints shipped with the package (e.g. ``CartPole-v1-a3c``)."""
    folder = shipped_dir()
    if not folder.is_dir():
        return {}
    return {p.name[: -len(SHIPPED_SUFFIX)]: p for p in sorted(folder.glob("*" + SHIPPED_SUFFIX))}


def find_checkpoint(path):
    """The checkpoint file that ``path`` means.

    In order: an existing file is itself; a directory means its ``latest.h5`` (a run
    directory); anything else that names a shipped checkpoint (case-insensitive, a unique
    prefix is enough: ``cartpole`` → ``CartPole-v1-a3c``) means that one. Otherwise raises
    :class:`CheckpointError` listing the shipped names.
    """
    p = Path(path)
    if p.is_dir():
        latest, others = latest_in(p)
        if latest is not None:
            return latest
        hint = f"; it has {', '.join(others)}: give one of them" if others else "; give a checkpoint file"
        raise CheckpointError(f"{p} is a directory without latest.h5{hint}")
    if p.exists():
        return p
    shipped = shipped_checkpoints()
    key = str(path).lower()
    key = key.removesuffix(SHIPPED_SUFFIX)
    exact = [n for n in shipped if n.lower() == key]
    matches = exact or [n for n in shipped if n.lower().startswith(key)]
    if len(matches) == 1:
        return shipped[matches[0]]
    names = ", ".join(shipped) or "none installed"
    if len(matches) > 1:
        raise CheckpointError(f"{path!r} matches several shipped checkpoints ({', '.join(matches)}); give the full "
                              f"name")
    raise CheckpointError(f"{path}: no such file or run directory (shipped checkpoints: {names})")


# ---------------------------------------------------------------------- statistics
def _finite(x):
    """A float for JSON: NaN and ±inf become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def array_stats(a):
    """mean, std, min, max and L2 norm of an array (computed in float64)."""
    a = np.asarray(a, np.float64).reshape(-1)
    if a.size == 0:
        return dict(mean=None, std=None, min=None, max=None, norm=0.0)
    return dict(mean=_finite(a.mean()), std=_finite(a.std()), min=_finite(a.min()), max=_finite(a.max()),
                norm=_finite(np.sqrt(np.dot(a, a))))


def tensors(ckpt, network=None, target=False):
    """[(name, array)] of every weight and bias in layer order, e.g. ("fc1/W", (4, 32) array)."""
    from numba_a3c.nn.network import Network

    network = network or Network(ckpt.spec)
    flat = ckpt.theta_target if target else ckpt.theta
    return [(p.name, flat[p.offset:p.offset + p.size].reshape(p.shape)) for p in network.params]


def layer_values(ckpt, name):
    """{tensor name: array} for ``name``: a tensor ("fc1/W") or a whole layer ("fc1": W and b).

    A ``target/`` prefix ("target/q/W") reads the target network θ⁻ of a Q method.
    Raises :class:`InspectError` listing the valid names when there is no such layer.
    """
    use_target = name.startswith("target/")
    key = name[len("target/"):] if use_target else name
    if use_target and ckpt.theta_target is None:
        raise InspectError(f"{name!r}: this checkpoint has no target network ({ckpt.config.algo} keeps none)")
    all_tensors = tensors(ckpt, target=use_target)
    chosen = {n: a for n, a in all_tensors if n == key or n.split("/")[0] == key}
    if not chosen:
        layers = list(dict.fromkeys(n.split("/")[0] for n, _ in all_tensors))
        valid = layers + [n for n, _ in all_tensors]
        extra = " (prefix target/ for the target network)" if ckpt.theta_target is not None else ""
        raise InspectError(f"no layer {name!r} in this checkpoint; valid names: {', '.join(valid)}{extra}")
    prefix = "target/" if use_target else ""
    return {prefix + n: a for n, a in chosen.items()}


def binned_curve(episodes, end_step, bins=20):
    """The learning curve: episode returns averaged in ``bins`` equal ranges of the global step.

    ``episodes`` has rows (global_step, thread, return, length, wall_time). Returns a list of
    dicts (start, end, episodes, mean, min, max); an empty range has episodes 0 and mean None.
    """
    episodes = np.asarray(episodes, np.float64).reshape(-1, 5)
    end = max(float(end_step), float(episodes[:, 0].max()) if len(episodes) else 0.0, 1.0)
    edges = np.linspace(0.0, end, bins + 1)
    which = np.clip(np.searchsorted(edges, episodes[:, 0], side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        r = episodes[which == b, 2]
        out.append(dict(start=int(edges[b]), end=int(edges[b + 1]), episodes=int(r.size),
                        mean=_finite(r.mean()) if r.size else None, min=_finite(r.min()) if r.size else None,
                        max=_finite(r.max()) if r.size else None))
    return out


def returns_by_epsilon(episodes, finals, last=100):
    """The Q methods' training score split by each thread's final ε (they keep it after the anneal,
    so a thread with ε 0.5 plays half at random): for each ε, its threads and the mean return of
    their ``last`` logged episodes. ``episodes``: rows (T, thread, return, length, wall)."""
    finals = np.round(np.asarray(finals, np.float64), 6)
    groups = []
    for eps in np.unique(finals):
        threads = np.flatnonzero(finals == eps)
        mine = episodes[np.isin(episodes[:, 1].astype(np.int64), threads), 2][-last:]
        groups.append(dict(epsilon=float(eps), threads=[int(k) for k in threads], episodes=int(mine.size),
                           mean_return=_finite(mine.mean()) if mine.size else None))
    return groups


def summarize(ckpt, path=None, bins=20, last_evaluations=5):
    """Everything ``asyncrl inspect`` shows, as plain data (JSON-ready)."""
    from numba_a3c.algorithms.state import (
        C_TARGET_UPDATES,
        TF_ENTROPY,
        TF_EPS_FINAL,
        TF_EPSILON,
        TF_GRAD_NORM,
        TF_LOSS,
        TF_LR,
        TF_VALUE,
        TI_EPISODES,
        TI_STEPS,
        TI_UPDATES,
    )
    from numba_a3c.checkpoint import EVALUATION_COLUMNS
    from numba_a3c.nn.network import Network

    network = Network(ckpt.spec)
    config = ckpt.config
    T = ckpt.global_step
    is_q = config.algo != "a3c"
    attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in ckpt.attrs.items()}
    file_info = dict(path=None if path is None else str(path),
                     size_bytes=None if path is None else Path(path).stat().st_size,
                     format=attrs.get("format"), format_version=attrs.get("format_version"),
                     created=attrs.get("created"),
                     versions={k: attrs[k] for k in ("numba_a3c_version", "numba_version", "numpy_version",
                                                     "h5py_version", "python_version") if k in attrs},
                     at_rest=bool(attrs.get("at_rest", False)))

    ti, tf = ckpt.thread_i, ckpt.thread_f
    threads = []
    for k in range(ti.shape[0]):
        row = dict(thread=k, steps=int(ti[k, TI_STEPS]), episodes=int(ti[k, TI_EPISODES]),
                   updates=int(ti[k, TI_UPDATES]), lr=_finite(tf[k, TF_LR]), loss=_finite(tf[k, TF_LOSS]),
                   grad_norm=_finite(tf[k, TF_GRAD_NORM]), value=_finite(tf[k, TF_VALUE]))
        if is_q:
            row["epsilon"] = _finite(tf[k, TF_EPSILON])
        else:
            row["entropy"] = _finite(tf[k, TF_ENTROPY])
        threads.append(row)
    episodes = np.asarray(ckpt.episodes, np.float64).reshape(-1, 5)
    recent = episodes[-100:, 2]
    wall = float(ckpt.wall_time)
    progress = dict(global_step=T, budget=int(config.steps), fraction=T / config.steps if config.steps else None,
                    episodes=int(ti[:, TI_EPISODES].sum()), logged_episodes=len(episodes),
                    wall_time=wall, steps_per_s=T / wall if wall > 0 else None, threads=int(ti.shape[0]),
                    recent_return=_finite(recent.mean()) if recent.size else None,
                    recent_episodes=int(recent.size),
                    best_return=_finite(episodes[:, 2].max()) if len(episodes) else None)
    if is_q:
        progress["target_updates"] = int(ckpt.counters[C_TARGET_UPDATES])
        progress["recent_return_by_epsilon"] = returns_by_epsilon(episodes, tf[:, TF_EPS_FINAL])

    layers = []
    by_layer = {}
    for name, arr in tensors(ckpt, network):
        by_layer.setdefault(name.split("/")[0], []).append((name, arr))
    for layer in network.layers:
        entry = dict(name=layer["name"], type=layer["type"], activation=layer["activation"],
                     input=layer["input"], input_shape=list(layer["input_shape"]),
                     output_shape=list(layer["output_shape"]), tensors=[])
        if layer["type"] == "conv":
            entry.update(kernel=int(layer["kernel"]), stride=int(layer["stride"]))
        elif layer["type"] == "lstm":
            entry.update(cells=int(layer["cells"]), gate_order=layer["gate_order"])
        for name, arr in by_layer.get(layer["name"], []):
            entry["tensors"].append(dict(name=name, shape=list(arr.shape), params=int(arr.size), **array_stats(arr)))
        layers.append(entry)
    net_info = dict(heads=ckpt.spec.heads, n_actions=int(ckpt.spec.n_actions),
                    input_shape=list(ckpt.spec.input_shape), input_scale=float(ckpt.spec.input_scale),
                    n_params=int(network.n_params), parameters=array_stats(ckpt.theta), layers=layers)
    if ckpt.spec.heads == "gaussian":
        net_info.update(action_low=list(ckpt.spec.action_low), action_high=list(ckpt.spec.action_high))
    if ckpt.theta_target is not None:
        diff = np.asarray(ckpt.theta, np.float64) - np.asarray(ckpt.theta_target, np.float64)
        net_info["target"] = dict(parameters=array_stats(ckpt.theta_target),
                                  max_abs_difference=_finite(np.abs(diff).max()),
                                  difference_norm=_finite(np.sqrt(np.dot(diff, diff))))

    optimizer = dict(kind=config.optimizer)
    if ckpt.attrs.get("optimizer_omitted"):
        optimizer["omitted"] = "not in this file (a copy made without the optimizer statistics)"
    g = np.asarray(ckpt.opt_shared)
    if g.size:
        optimizer["shared_g"] = dict(size=int(g.size), **array_stats(g))
        # The RMSProp step divides by sqrt(g + eps): its typical size says how the lr is scaled.
        optimizer["shared_g"]["rms_step_scale"] = _finite(np.mean(1.0 / np.sqrt(g.astype(np.float64)
                                                                                  + config.rms_eps)))
    per = np.asarray(ckpt.opt_private)
    if per.size:
        optimizer["per_thread"] = [dict(thread=k, **array_stats(per[k])) for k in range(per.shape[0])]

    ev = np.asarray(ckpt.evaluations, np.float64).reshape(-1, len(EVALUATION_COLUMNS))
    evals = [dict(zip(EVALUATION_COLUMNS, (int(r[0]), *map(_finite, r[1:5]), int(r[5]), _finite(r[6]))))
             for r in ev[-last_evaluations:]] if last_evaluations > 0 else []
    best = None
    if len(ev):
        b = int(np.argmax(ev[:, 1]))
        best = dict(global_step=int(ev[b, 0]), mean=_finite(ev[b, 1]))
    return dict(file=file_info, config=config.to_dict(), progress=progress, threads=threads, network=net_info,
                optimizer=optimizer, normalization=normalization_summary(ckpt),
                learning_curve=dict(bins=binned_curve(episodes, T, bins)),
                evaluations=dict(count=len(ev), best=best, last=evals))


def normalization_summary(ckpt):
    """The checkpoint's /normalizer as plain values (numba_a3c.normalize), or None without one."""
    from numba_a3c.normalize import (
        NC_OBS_CLIP,
        NC_REWARD,
        NC_REWARD_CLIP,
        S_OBS_COUNT,
        S_RET_COUNT,
        S_RET_VAR,
        S_SIZE,
        reward_scale,
    )

    values = None
    if ckpt.value_stats is not None:
        from numba_a3c.normalize import value_moments

        mean, std = value_moments(ckpt.value_stats)
        values = dict(count=int(ckpt.value_stats[0]), mean=_finite(mean), std=_finite(std))
    if ckpt.norm_stats is None:
        return None if values is None else dict(observations=None, rewards=None, values=values)
    frozen = ckpt.frozen_observations()
    st, cf = ckpt.norm_stats, ckpt.norm_config
    out = dict(observations=None, rewards=None, values=values)
    if frozen is not None:
        D = (len(frozen.stats) - S_SIZE) // 2
        mean, var = frozen.stats[S_SIZE:S_SIZE + D], frozen.stats[S_SIZE + D:]
        out["observations"] = dict(count=int(st[S_OBS_COUNT]), clip=float(cf[NC_OBS_CLIP]),
                                   mean=[_finite(m) for m in mean], std=[_finite(np.sqrt(max(v, 0.0))) for v in var])
    if cf[NC_REWARD]:
        out["rewards"] = dict(count=int(st[S_RET_COUNT]), return_std=_finite(np.sqrt(max(st[S_RET_VAR], 0.0))),
                              scale=_finite(reward_scale(st, cf)), clip=float(cf[NC_REWARD_CLIP]))
    return out


# ---------------------------------------------------------------------- text rendering
def _g(x, digits=4):
    return "-" if x is None else f"{x:.{digits}g}"


def _table(header, rows, indent="  "):
    """Left-align the first column, right-align the others."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for r in cells:
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append(indent + "  ".join(parts).rstrip())
    return lines


def text_plot(xs, ys, lows=None, highs=None, width=60, height=12, x_label="global step", y_label="return"):
    """A learning curve drawn with characters: ``*`` the mean of each bin, ``:`` its min–max range.

    ``xs`` are the bins' end steps, ``ys`` their means (None: an empty bin, drawn blank). Each bin
    gets ``width // len(xs)`` columns. Returns a list of lines.
    """
    points = [(i, y) for i, y in enumerate(ys) if y is not None]
    if not points:
        return ["  (no finished episodes yet)"]
    lo_all = [v for v in (lows or ys) if v is not None]
    hi_all = [v for v in (highs or ys) if v is not None]
    lo, hi = min(lo_all), max(hi_all)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    col_w = max(1, width // len(ys))

    def row_of(v):
        return int(round((hi - v) / (hi - lo) * (height - 1)))

    grid = [[" "] * (col_w * len(ys)) for _ in range(height)]
    for i, y in points:
        c = i * col_w + col_w // 2
        if lows is not None and highs is not None and lows[i] is not None:
            for r in range(row_of(highs[i]), row_of(lows[i]) + 1):
                grid[r][c] = ":"
        grid[row_of(y)][c] = "*"
    labels = [f"{hi:.4g}", f"{(hi + lo) / 2:.4g}", f"{lo:.4g}"]
    lw = max(len(s) for s in labels)
    lines = []
    for r in range(height):
        label = labels[0] if r == 0 else labels[2] if r == height - 1 else labels[1] if r == (height - 1) // 2 else ""
        lines.append(f"  {label.rjust(lw)} |" + "".join(grid[r]).rstrip())
    axis_w = col_w * len(ys)
    lines.append("  " + " " * lw + " +" + "-" * axis_w)
    left, right = "0", f"{int(xs[-1]):,}"
    lines.append("  " + " " * lw + "  " + left + (f"{x_label} ({y_label}: * mean, : min-max)").center(
        max(0, axis_w - len(left) - len(right))) + right)
    return lines


def format_summary(s):
    """The text ``asyncrl inspect`` prints for a :func:`summarize` result."""
    f, c, p, n, o = s["file"], s["config"], s["progress"], s["network"], s["optimizer"]
    out = []
    size = f"{f['size_bytes'] / 1024:.1f} KiB, " if f.get("size_bytes") is not None else ""
    v = f["versions"]
    out.append(f"checkpoint {f['path']} ({size}format version {f['format_version']}, created {f['created']}, "
               f"numba_a3c {v.get('numba_a3c_version', '?')}, numba {v.get('numba_version', '?')}, "
               f"numpy {v.get('numpy_version', '?')})")
    out.append("")
    out.append("configuration")
    line = " "
    for k, val in c.items():
        val = ",".join(map(str, val)) if isinstance(val, list) else val
        item = f" {k}={val}"
        if len(line) + len(item) > 100:
            out.append(line)
            line = " "
        line += item
    out.append(line)
    out.append("")
    out.append("progress")
    frac = f" ({100 * p['fraction']:.1f}%)" if p["fraction"] is not None else ""
    rate = f"{p['steps_per_s']:,.0f} steps/s" if p["steps_per_s"] else "- steps/s"
    out.append(f"  global step {p['global_step']:,} of {p['budget']:,}{frac}; {p['episodes']:,} episodes; "
               f"wall time {p['wall_time']:.1f} s ({rate}); {p['threads']} thread(s)")
    if p["recent_episodes"]:
        out.append(f"  mean return of the last {p['recent_episodes']} episodes: {_g(p['recent_return'])}; "
                   f"best episode: {_g(p['best_return'])}")
    if p.get("recent_return_by_epsilon") and p["recent_episodes"]:
        out.append("  by the threads' final ε (kept after the anneal), the mean return of their last 100 episodes:")
        for g in p["recent_return_by_epsilon"]:
            out.append(f"    ε {g['epsilon']:g} ({len(g['threads'])} thread{'s' if len(g['threads']) > 1 else ''}): "
                       + (f"{_g(g['mean_return'])} over {g['episodes']} episodes" if g["episodes"] else "no episodes"))
    if "target_updates" in p:
        out.append(f"  target network refreshed {p['target_updates']:,} times")
    if not f["at_rest"]:
        out.append("  (saved while threads ran: a resume starts fresh episodes)")
    is_q = "epsilon" in (s["threads"][0] if s["threads"] else {})
    last_col = "epsilon" if is_q else "entropy"
    out += _table(["thread", "steps", "episodes", "updates", "lr", "last loss", "grad norm", "value", last_col],
                  [[t["thread"], f"{t['steps']:,}", f"{t['episodes']:,}", f"{t['updates']:,}", _g(t["lr"], 3),
                    _g(t["loss"]), _g(t["grad_norm"]), _g(t["value"]), _g(t.get(last_col))] for t in s["threads"]])
    out.append("")
    shape = "x".join(map(str, n["input_shape"]))
    actions = f"{n['n_actions']} actions"
    if "action_low" in n:
        actions = (f"continuous actions: a Box of {n['n_actions']} in "
                   + ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(n["action_low"], n["action_high"])))
    out.append(f"network: {n['heads']} heads, {n['n_params']:,} parameters, input {shape} "
               f"(scaled by {n['input_scale']:.4g}), {actions}")
    rows = []
    for layer in n["layers"]:
        kind = layer["type"] + (f" {layer['kernel']}x{layer['kernel']}/{layer['stride']}" if layer["type"] == "conv"
                                else f" {layer['cells']} {layer['gate_order']}" if layer["type"] == "lstm" else "")
        for t in layer["tensors"]:
            rows.append([t["name"], kind, layer["activation"], "x".join(map(str, t["shape"])), f"{t['params']:,}",
                         _g(t["mean"]), _g(t["std"]), _g(t["min"]), _g(t["max"]), _g(t["norm"])])
            kind = ""
    out += _table(["tensor", "type", "activation", "shape", "params", "mean", "std", "min", "max", "L2 norm"], rows)
    if "target" in n:
        t = n["target"]
        out.append(f"  target network θ⁻: max |θ - θ⁻| {_g(t['max_abs_difference'])}, "
                   f"‖θ - θ⁻‖ {_g(t['difference_norm'])}")
    out.append("")
    out.append(f"optimizer: {o['kind']}" + (f"; statistics {o['omitted']}" if "omitted" in o else ""))
    if "shared_g" in o:
        g = o["shared_g"]
        out.append(f"  shared g ({g['size']:,} values): mean {_g(g['mean'])}, max {_g(g['max'])}, "
                   f"min {_g(g['min'])}; mean 1/sqrt(g + eps) {_g(g['rms_step_scale'])}")
    if "per_thread" in o:
        name = "m" if o["kind"] == "momentum" else "g"
        out += _table(["thread", f"{name} mean", f"{name} std", f"{name} min", f"{name} max"],
                      [[t["thread"], _g(t["mean"]), _g(t["std"]), _g(t["min"]), _g(t["max"])]
                       for t in o["per_thread"]])
    out.append("")
    nz = s.get("normalization")
    if nz and nz["observations"]:
        ob = nz["observations"]
        out.append(f"observation normalisation (--normalize-obs): {ob['count']:,} observations, each component "
                   f"(x - mean) / std clipped to ±{ob['clip']:g}")
        out += _table(["component", "mean", "std"], [[i, _g(m), _g(sd)] for i, (m, sd) in
                                                     enumerate(zip(ob["mean"], ob["std"]))])
    if nz and nz["rewards"]:
        rw = nz["rewards"]
        out.append(f"reward scaling (--normalize-reward): std of the discounted return {_g(rw['return_std'])} "
                   f"over {rw['count']:,} steps; the learner's rewards are r × {_g(rw['scale'])}, clipped to "
                   f"±{rw['clip']:g}")
    if nz and nz.get("values"):
        vs = nz["values"]
        out.append(f"value normalisation (--normalize-value): returns of mean {_g(vs['mean'])} and std "
                   f"{_g(vs['std'])} over {vs['count']:,}; V = std × (the value head's output) + mean")
    if nz and (nz["observations"] or nz["rewards"] or nz.get("values")):
        out.append("")
    bins = s["learning_curve"]["bins"]
    has_episodes = any(b["episodes"] for b in bins)
    out.append(f"learning curve: episode return vs global step ({len(bins)} bins of "
               f"{bins[0]['end'] - bins[0]['start']:,} steps)" if has_episodes else "learning curve")
    out += text_plot([b["end"] for b in bins], [b["mean"] for b in bins], [b["min"] for b in bins],
                     [b["max"] for b in bins])
    out.append("")
    e = s["evaluations"]
    if e["count"]:
        best = e["best"]
        out.append(f"evaluations: {e['count']} (best mean {_g(best['mean'])} at step {best['global_step']:,}); "
                   f"the last {len(e['last'])}:")
        out += _table(["step", "mean", "std", "min", "max", "episodes"],
                      [[f"{r['global_step']:,}", _g(r["mean"]), _g(r["std"]), _g(r["min"]), _g(r["max"]),
                        r["episodes"]] for r in e["last"]])
    else:
        out.append("evaluations: none (train with --eval-every N)")
    return "\n".join(out)


def format_values(values):
    """The text of ``--layer``: each tensor's name, shape and every value."""
    out = []
    with np.printoptions(threshold=np.inf, linewidth=120, precision=6, suppress=False):
        for name, arr in values.items():
            out.append(f"{name}  shape {'x'.join(map(str, arr.shape))}  ({arr.size:,} values, {arr.dtype})")
            out.append(np.array2string(arr, separator=", "))
    return "\n".join(out)


# ---------------------------------------------------------------------- plotting
def require(module, extra):
    """Import an optional dependency, or raise :class:`InspectError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InspectError(f"{module.split('.')[0]} is not installed; run: pip install 'numba_a3c[{extra}]'") from None


def plot_learning_curve(ckpt, out_path, bins=50, title=None):
    """Draw the learning curve to an image file (PNG, SVG, PDF… by its extension) with matplotlib:
    every episode's return (dots), its binned mean (line) and the evaluations (mean ± std)."""
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = np.asarray(ckpt.episodes, np.float64).reshape(-1, 5)
    ev = np.asarray(ckpt.evaluations, np.float64).reshape(-1, 7)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if len(episodes):
            ax.plot(episodes[:, 0], episodes[:, 2], ".", ms=2, alpha=0.25, color="tab:blue", label="episode return")
            curve = [b for b in binned_curve(episodes, ckpt.global_step, bins) if b["mean"] is not None]
            ax.plot([(b["start"] + b["end"]) / 2 for b in curve], [b["mean"] for b in curve], "-",
                    color="tab:blue", lw=2, label=f"mean per bin ({bins} bins)")
        if len(ev):
            ax.errorbar(ev[:, 0], ev[:, 1], yerr=ev[:, 2], fmt="o", color="tab:red", capsize=3,
                        label="evaluation (mean ± std)")
        cfg = ckpt.config
        ax.set_title(title or f"{cfg.algo} on {cfg.env} ({cfg.threads} threads, seed {cfg.seed})")
        ax.set_xlabel("global step T")
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
        if len(episodes) or len(ev):
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_path)
    finally:
        plt.close(fig)
    return Path(out_path)


# ---------------------------------------------------------------------- evaluation
def evaluate_checkpoint(ckpt, episodes=10, mode="greedy", epsilon=0.0, seed=0, max_steps=0, record=False,
                        on_episode=None, env_info=None):
    """Play ``episodes`` episodes with the checkpoint's policy.

    ``mode`` is "greedy" (argmax of Q, or of π's logits), "epsilon" (ε-greedy) or "stochastic"
    (sample a ~ π; actor-critic only). Returns (returns, lengths, frames): ``frames`` is the list
    of RGB frames of the first episode when ``record`` (its reset frame, then one per step),
    else None. ``on_episode(index, return, length)`` is called as each episode ends.

    Works for every environment kind through :func:`numba_a3c.evaluate.evaluate`: a native
    environment plays all its episodes in one nopython call; the others (gymnasium, Atari, and
    any recording) play one episode per call, episode e with seed ``seed + e``, so progress is
    reported as it happens. ``env_info`` plays another environment than the configuration's (one
    made by a Python callable, :func:`numba_a3c.envs.registry.describe_callable`).
    """
    from numba_a3c.build import environment, network_spec
    from numba_a3c.evaluate import evaluate
    from numba_a3c.nn.network import Network

    config = ckpt.config
    env_info = env_info or environment(config)
    expected = network_spec(config, env_info)
    if expected.input_shape != ckpt.spec.input_shape or expected.n_actions != ckpt.spec.n_actions:
        settings = f" with {', '.join(config.env_kwargs)}" if config.env_kwargs else ""
        raise InspectError(f"the checkpoint's network takes {ckpt.spec.input_shape} observations and "
                           f"{ckpt.spec.n_actions} actions, but {config.env}{settings} gives {env_info.obs_shape} "
                           f"and {env_info.n_actions}; it was saved for a different version or different settings "
                           f"of that environment")
    if expected.input_encoding != ckpt.spec.input_encoding or expected.input_scale != ckpt.spec.input_scale:
        raise InspectError(f"the checkpoint's network reads observations encoded {ckpt.spec.input_encoding!r} "
                           f"scaled by {ckpt.spec.input_scale:.4g}, but {config.env} gives them to be encoded "
                           f"{expected.input_encoding!r} scaled by {expected.input_scale:.4g}; it was saved by "
                           f"another version of numba_a3c or of that environment")
    network = Network(ckpt.spec)
    kwargs = dict(mode=mode, epsilon=epsilon, max_steps=max_steps, observations=ckpt.frozen_observations())
    if env_info.kind == "native" and not record:
        returns, lengths = evaluate(network, ckpt.theta, env_info, episodes=episodes, seed=seed, **kwargs)
        for e in range(episodes):
            if on_episode is not None:
                on_episode(e, float(returns[e]), int(lengths[e]))
        return returns, lengths, None

    frames = [] if record else None

    def on_frame(frame):
        if frame is None:
            raise InspectError(f"{config.env} does not render frames here (render() gave None); "
                               f"--record needs an environment with rgb_array rendering")
        frames.append(np.asarray(frame, np.uint8).copy())

    returns = np.zeros(episodes, np.float64)
    lengths = np.zeros(episodes, np.int64)
    for e in range(episodes):
        with warnings.catch_warnings():
            # gymnasium warns on render() without a render mode; on_frame turns that into one clear error
            warnings.filterwarnings("ignore", message=".*render method without specifying any render mode")
            try:
                r, n = evaluate(network, ckpt.theta, env_info, episodes=1, seed=seed + e,
                                on_frame=on_frame if record and e == 0 else None, **kwargs)
            except Exception as exc:
                # gymnasium's renderers need extras (pygame for classic control): say so in one line.
                import gymnasium

                if not isinstance(exc, (ImportError, gymnasium.error.DependencyNotInstalled)):
                    raise
                raise InspectError(f"{config.env} cannot render frames here: {exc}") from None
        returns[e], lengths[e] = r[0], n[0]
        if on_episode is not None:
            on_episode(e, float(r[0]), int(n[0]))
    return returns, lengths, frames


def with_env_kwargs(config, items):
    """``config`` with the "KEY=VALUE" ``items`` set over its own ``env_kwargs``: an item whose key
    the run already had replaces it, a new key is added (the run's order kept, new keys after)."""
    import dataclasses

    from numba_a3c.envs.base import parse_env_kwargs

    parse_env_kwargs(items)      # a malformed item is refused here, in one line
    merged = {item.partition("=")[0].strip(): item for item in config.env_kwargs}
    merged.update({item.partition("=")[0].strip(): item.strip() for item in items})
    return dataclasses.replace(config, env_kwargs=tuple(merged.values()))


def evaluation_result(file, ckpt, mode, epsilon, seed, returns, lengths, wall_time, recording=None):
    """The numbers of one evaluation, as ``asyncrl eval --json`` prints them and
    :meth:`numba_a3c.Agent.evaluate` returns them."""
    cfg = ckpt.config
    return dict(checkpoint=str(file), env=cfg.env, env_kwargs=list(cfg.env_kwargs), algo=cfg.algo,
                global_step=ckpt.global_step, mode=mode,
                epsilon=epsilon if mode == "epsilon" else None, seed=seed, episodes=len(returns),
                returns=[float(r) for r in returns], lengths=[int(n) for n in lengths],
                mean=float(returns.mean()), std=float(returns.std()), min=float(returns.min()),
                max=float(returns.max()), mean_length=float(lengths.mean()), wall_time=wall_time,
                recording=str(recording) if recording else None)


def recording_fps(env_id):
    """Frames per second a recording of ``env_id`` plays at by default: the game's own pace for
    Atari (one frame per agent step: 60 Hz / 4 frames a step = 15), else 30."""
    if env_id.startswith("ALE/"):
        from numba_a3c.envs.atari import FRAME_RATE, FRAME_SKIP

        return FRAME_RATE // FRAME_SKIP
    return 30


def write_gif(frames, path, fps=30):
    """Write RGB uint8 frames as an animated GIF (pillow), looping forever."""
    Image = require("PIL.Image", "record")
    if not frames:
        raise InspectError("no frames to record")
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, int(round(1000 / fps))),
                   loop=0, optimize=False)
    return Path(path)
