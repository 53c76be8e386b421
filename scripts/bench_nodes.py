#!/usr/bin/env python
"""Benchmarks of ``--nodes`` (docs/distributed.md): learning, throughput, exchange cost.

Starts a local Ray cluster of ``--raylets`` raylets of one CPU each (``ray.cluster_utils.Cluster``;
or joins ``--ray-address``) and, through :func:`numba_a3c.train`:

* ``solve``: A3C on CartPole-v1 with ``--nodes 2 --threads 1`` and the preset, on ``--seeds``;
  a seed is solved when the final greedy evaluation (10 episodes) is at least 475.
* ``rate``: agent steps/s of one node × 1 thread, two nodes × 1 thread (in this order, ``--repeat``
  times, side by side in one invocation) and a plain single-process run with 1 thread, each for
  ``--rate-steps`` steps; the rate is taken between the first progress report past 10 % of the
  budget and the last one, so that starting the actors and compiling are left out. Also the
  two-node rate at each of ``--intervals`` (exchange every K of a node's own steps) and the mean
  exchange round trip (a node's time in ``exchange``, over its exchanges).
* ``cost``: the exchange round trip for parameter vectors of ``--params`` sizes (the number the
  scaling projection of docs/distributed.md starts from).

Everything is printed, one line per run; nothing is timed in the tests::

    python scripts/bench_nodes.py solve --seeds 0 1 2 3 4
    python scripts/bench_nodes.py rate --rate-steps 3000000 --intervals 250 1000 4000
    python scripts/bench_nodes.py cost --params 259 100000 1000000
"""

import argparse
import statistics
import sys
import tempfile
import time


def steady_rate(progress, budget):
    """Agent steps/s between the first report past 10 % of the budget and the last report."""
    points = [(p.elapsed, p.steps) for p in progress if p.steps >= 0.1 * budget]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return float("nan")
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def train(address, out, **options):
    import numba_a3c

    kwargs = dict(ray_address=address) if options.get("nodes") else {}
    t0 = time.monotonic()
    run = numba_a3c.train("CartPole-v1", "a3c", out=out, force=True, log_interval=0.25, **kwargs, **options)
    return run, time.monotonic() - t0


def solve(args, address, tmp):
    solved = 0
    for seed in args.seeds:
        extra = {} if args.exchange_steps is None else dict(exchange_steps=args.exchange_steps)
        run, wall = train(address, f"{tmp}/solve-{seed}", nodes=2, threads=1, seed=seed, eval_every=0, **extra)
        mean = run.final_eval.mean if run.final_eval is not None else float("nan")
        solved += mean >= 475
        print(f"seed {seed}: {run.status}, {run.steps:,} steps, greedy mean {mean:.1f} over 10 episodes, "
              f"{wall:.1f} s in all", flush=True)
    print(f"solved {solved} of {len(args.seeds)} seeds (greedy mean >= 475)")


def rate_run(address, tmp, label, **options):
    from numba_a3c.config import resolve
    from numba_a3c.ray_nodes import DistributedTrainer
    from numba_a3c.trainer import Trainer

    config = resolve(dict(env="CartPole-v1", algo="a3c", eval_every=0, log_interval=0.25, **options))
    progress = []
    if config.nodes:
        trainer = DistributedTrainer(config, ray_address=address, on_progress=progress.append, final_eval=False)
    else:
        trainer = Trainer(config, on_progress=progress.append, final_eval=False)
    result = trainer.run()
    rate = steady_rate(progress, config.steps)
    line = f"{label}: {result.status}, {result.steps:,} steps, steady {rate:,.0f} agent steps/s"
    if config.nodes:
        res = list(trainer.node_results.values())
        n_ex = sum(r.get("exchanges", 0) for r in res)
        t_ex = sum(r.get("exchange_seconds", 0.0) for r in res)
        line += f", {n_ex} exchanges, {1000 * t_ex / max(n_ex, 1):.2f} ms per exchange round trip"
    print(line, flush=True)
    return rate


def rates(args, address, tmp):
    ratios = []
    for i in range(args.repeat):
        one = rate_run(address, tmp, f"[{i}] 1 node x 1 thread", nodes=1, threads=1, steps=args.rate_steps)
        two = rate_run(address, tmp, f"[{i}] 2 nodes x 1 thread", nodes=2, threads=1, steps=args.rate_steps)
        plain = rate_run(address, tmp, f"[{i}] no Ray, 1 thread", nodes=0, threads=1, steps=args.rate_steps)
        ratios.append(two / one)
        print(f"[{i}] ratio 2 nodes / 1 node: {two / one:.2f}; 1 node / plain 1 thread: {one / plain:.2f}", flush=True)
    print(f"median ratio 2 nodes / 1 node over {len(ratios)}: {statistics.median(ratios):.2f}")
    for k in args.intervals:
        rate_run(address, tmp, f"2 nodes x 1 thread, --exchange-steps {k}", nodes=2, threads=1, steps=args.rate_steps,
                 exchange_steps=k)


def cost(args, address):
    """The exchange round trip a node sees, for parameter vectors of ``--params`` sizes: a Δ, the
    statistics and the thread rows out, θ and ḡ back, through a ParameterServer actor."""
    import numpy as np
    import ray

    from numba_a3c.algorithms.state import TF_SIZE, TI_SIZE
    from numba_a3c.config import resolve
    from numba_a3c.distributed import ParameterServer

    ray.init(address=address, log_to_driver=False)
    try:
        for P in args.params:
            config = resolve(dict(nodes=1, threads=1))
            theta = np.zeros(P, np.float32)
            server = ray.remote(num_cpus=0)(ParameterServer).remote(config, dict(
                theta=theta, theta_target=theta, g=theta, T=0, target_next=1, target_updates=0,
                thread_i=np.zeros((1, TI_SIZE), np.int64), thread_f=np.zeros((1, TF_SIZE))))
            ray.get(server.join.remote(0))
            rows = np.zeros((1, TI_SIZE), np.int64), np.zeros((1, TF_SIZE))
            times = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                reply = ray.get(server.exchange.remote(0, theta, 1000, theta, (), *rows))
                np.asarray(reply["theta"]).sum()      # the node reads what came back
                times.append(time.perf_counter() - t0)
            ray.kill(server)
            print(f"{P:>10,} parameters ({8 * P / 1e6:.1f} MB each way): exchange round trip median "
                  f"{1000 * statistics.median(times):.2f} ms, min {1000 * min(times):.2f} ms over {args.calls}",
                  flush=True)
    finally:
        ray.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("solve", "rate", "cost", "all"))
    ap.add_argument("--params", type=int, nargs="+", default=[259, 100_000, 1_000_000])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--rate-steps", type=int, default=3_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--intervals", type=int, nargs="*", default=[250, 1000, 4000])
    ap.add_argument("--exchange-steps", type=int, default=None, help="solve: instead of the default")
    ap.add_argument("--raylets", type=int, default=2)
    ap.add_argument("--ray-address", default=None)
    args = ap.parse_args(argv)
    cluster = None
    address = args.ray_address
    if address is None:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        for _ in range(args.raylets - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.what in ("solve", "all"):
                solve(args, address, tmp)
            if args.what in ("rate", "all"):
                rates(args, address, tmp)
            if args.what in ("cost", "all"):
                cost(args, address)
    finally:
        if cluster is not None:
            cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
