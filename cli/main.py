"""``asyncrl``: train, evaluate, inspect and benchmark asynchronous RL agents."""

import click

from numba_a3c import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="asyncrl")
def cli():
    """Asynchronous deep reinforcement learning (Mnih et al. 2016) on CPU threads.

    One-step Q-learning, one-step Sarsa, n-step Q-learning and A3C, with Numba kernels
    updating one shared parameter array lock-free from every thread.
    """


# (module, command) of every subcommand. Each command lives in its own module and imports the
# library only inside its function, so `asyncrl --help` stays fast.
COMMANDS = [
    ("numba_a3c.cli.train", "train"),
    ("numba_a3c.cli.inspect", "inspect"),
    ("numba_a3c.cli.eval", "eval_"),
    ("numba_a3c.cli.bench", "bench"),
]


def _register():
    import importlib

    for module, name in COMMANDS:
        cli.add_command(getattr(importlib.import_module(module), name))


_register()


def main():
    cli()


if __name__ == "__main__":
    main()
