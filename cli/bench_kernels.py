"""``asyncrl bench kernels``: how long the network, loss and optimiser kernels take on this machine."""

import json

import click


def _us(seconds):
    return f"{seconds * 1e6:,.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def _layer_table(name, b, segment_s, t_max):
    click.echo(f"{name}'s segment layer by layer (each layer alone, its {t_max} rows):")
    click.echo(f"  {'layer':10s}{'forward ×' + str(t_max):>14s}{'backward':>14s}{'products alone':>17s}"
               f"{'the rest':>14s}")
    for e in b["layers"]:
        rest = e["forward_s"] + e["backward_s"] - e["products_s"]
        click.echo(f"  {e['layer']:10s}{_us(e['forward_s']):>14s}{_us(e['backward_s']):>14s}"
                   f"{_us(e['products_s']):>17s}{_us(rest) if rest > 0 else '-':>14s}")
    whole = b["forward_s"] + b["gradient_s"]
    click.echo(f"  the layers alone sum to {_us(b['layers_sum_s'])}; whole, one layer after another: acting "
               f"passes {_us(b['forward_s'])} + loss and backward pass {_us(b['gradient_s'])} = {_us(whole)} "
               f"(the segment: {_us(segment_s)})")


@click.command("kernels", short_help="Time the network, loss and optimiser kernels; compile and start-up time.")
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(min=1),
              help="measurements per kernel; the median is reported (a warm-up call comes first)")
@click.option("--compile-times/--no-compile-times", default=True, show_default=True,
              help="also measure cold compile and warm start-up, each in a fresh interpreter (tens of seconds)")
@click.option("--torch/--no-torch", "with_torch", default=True, show_default=True,
              help="time the same Atari network in PyTorch on one thread, if torch is installed")
@click.option("--layers/--no-layers", default=True, show_default=True,
              help="also time the feed-forward networks' segments layer by layer, beside their products alone")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON (times in seconds)")
def kernels(repeats, compile_times, with_torch, layers, as_json):
    """Median time of the numerical core's kernels, for the MLP (4→64→64→2 actions + value) and the
    paper's Atari network (4×84×84 → conv 16 8×8/4 → conv 32 4×4/2 → dense 256 → 6 actions + value):

    \b
    forward          one observation (what acting costs)
    segment          a t_max = 5 A3C segment: 5 forward passes, the loss, backpropagation
    update           one shared-RMSProp step on all parameters, with the next θ′ ← θ
                     and dθ ← 0 in the same pass (as training runs it)
    update, 3 passes the same work as three sweeps (the step, dθ ← 0, θ′ ← θ)
    segment+update   a segment, then global norm and the one-pass update
    update's traffic the update's seven float32 streams with an add for its arithmetic

    and what bounds them: each segment's GFLOP/s (2 flops per multiply-add of its weights),
    its matrix products alone, each timed at the faster of OpenBLAS and the package's own loops
    (a floor under the segment with today's kernels; not for recurrent networks), and the
    update's GB/s beside the rate at which the same bytes move without its arithmetic;
    and, for the MLP and the Atari network, the segment layer by layer: each layer's forward
    passes of the 5 rows and its backward pass timed alone, beside its products alone, then the
    segment's two halves (the acting passes; the loss and backward pass) timed whole, whose
    excess over the layers' sum is what running the layers one after another costs

    With torch installed, the same Atari network and weights in PyTorch on one thread: its
    forward, its segment as one batch, and its segment as a worker runs it, the forward passes one
    observation at a time as it acts (keeping the graph, or acting without it and recomputing
    the batch; the cheaper is compared), which is what our segment's acting passes are.

    plus cold compile time (empty Numba cache) and warm start-up time (import + every kernel
    loaded from the cache), each the wall time of a fresh interpreter. Targets: Atari segment at
    most PyTorch's one-thread time, Atari forward ≤ 0.8 ms, MLP segment+update ≤ 15 µs, warm
    start-up ≤ 1.5 s, cold compile ≤ 60 s. Timings are only meaningful on an otherwise idle machine.
    """
    from numba_a3c.benchmarks import kernels as kb

    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    result = kb.run(repeats=repeats, compile_times=compile_times, torch=with_torch, progress=progress,
                    layers=layers)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    m = result["machine"]
    click.echo(f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); python {m['python']}, "
               f"numpy {m['numpy']}, numba {m['numba']}, scipy {m['scipy']}")
    click.echo(f"median of {result['repeats']} measurements, t_max = {result['t_max']}")
    rows = [("forward (1 observation)", "forward_s"), ("segment (5 steps fwd+bwd)", "segment_s"),
            ("update (shared RMSProp)", "update_s"), ("update, 3 passes", "update_3_passes_s"),
            ("segment + update", "segment_update_s"), ("update's traffic alone", "update_traffic_s")]
    nets = result["networks"]
    click.echo(f"{'':28s}" + "".join(f"{name + ' (' + format(e['n_params'], ',') + ' params)':>31s}"
                                     for name, e in nets.items()))
    for label, key in rows:
        click.echo(f"{label:28s}" + "".join(f"{_us(e[key]):>31s}" for e in nets.values()))
    click.echo(f"{'segment, GFLOP/s':28s}" + "".join(f"{e['segment_gflops_per_s']:>31.2f}" for e in nets.values()))
    floors = [f"{_us(e['products_s'])} ({e['products_share']:.0%})" if "products_s" in e else "-"
              for e in nets.values()]
    click.echo(f"{'its products alone (share)':28s}" + "".join(f"{f:>31s}" for f in floors))
    bandwidth = [f"{e['update_gb_per_s']:.1f} ({e['traffic_gb_per_s']:.1f})" for e in nets.values()]
    click.echo(f"{'update, GB/s (alone: GB/s)':28s}" + "".join(f"{b:>31s}" for b in bandwidth))
    for name, e in nets.items():
        if e.get("by_layer"):
            _layer_table(name, e["by_layer"], e["segment_s"], result["t_max"])
    t = result.get("torch")
    if t is not None:
        if "skipped" in t:
            click.echo(f"PyTorch comparison skipped: {t['skipped']}")
        else:
            click.echo(f"PyTorch {t['version']} (1 thread), Atari: forward {_us(t['forward_s'])} "
                       f"(ours/torch {t['forward_ratio']:.2f}), segment {_us(t['segment_s'])} "
                       f"(ours/torch {t['segment_ratio']:.2f}, {t['segment_gflops_per_s']:.2f} GFLOP/s; our "
                       f"segment's products alone/torch {t['products_ratio']:.2f}); a PyTorch worker, whose "
                       f"forward passes come one observation at a time as it acts: keeping the graph "
                       f"{_us(t['segment_stepwise_s'])}, or acting without it and recomputing the batch "
                       f"{_us(t['segment_recompute_s'])} (ours/the cheaper {t['worker_ratio']:.2f}); "
                       f"same weights: outputs differ by at most "
                       f"{t['max_output_diff']:.1e}, gradients by {t['max_rel_grad_diff']:.1e} (relative)")
    if "cold_compile_s" in result:
        click.echo(f"cold compile of every kernel: {result['cold_compile_s']:.1f} s   "
                   f"warm start-up (import + cached kernels ready): {result['warm_startup_s']:.2f} s")
