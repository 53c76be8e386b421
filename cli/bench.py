"""``asyncrl bench``: the group of benchmark commands (kernels, throughput, scaling, optimisers).

Each benchmark is its own command in its own module; register one by adding it to SUBCOMMANDS.
Modules are imported when the group is built but import the library only inside their command
function, so ``asyncrl --help`` stays fast.
"""

import importlib

import click


@click.group()
def bench():
    """Measure speed on this machine: kernels, throughput, scaling, optimisers."""


# (module, command) of every ``asyncrl bench`` subcommand.
SUBCOMMANDS = [
    ("numba_a3c.cli.bench_kernels", "kernels"),
    ("numba_a3c.cli.bench_throughput", "throughput"),
    ("numba_a3c.cli.bench_speedup", "speedup"),
    ("numba_a3c.cli.bench_optimizers", "optimizers"),
    ("numba_a3c.cli.bench_atari", "atari"),
]

for _module, _name in SUBCOMMANDS:
    bench.add_command(getattr(importlib.import_module(_module), _name))
