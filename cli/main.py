"""``asyncrl``: train, evaluate, inspect and benchmark asynchronous RL agents."""

import contextlib

import click

from numba_a3c import __version__
from numba_a3c.cli.errors import BadInput


@contextlib.contextmanager
def _one_line_usage_errors():
    """A usage error (an unknown option, a value of the wrong type, a missing argument) as one line,
    like every other bad input: ``Error: <what was wrong> (see 'asyncrl train --help')``, exit 2,
    instead of click's usage and hint lines above it. Help shown for a bare group stays as it is."""
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise
    except click.UsageError as exc:
        message = exc.format_message()
        message = message[:-1] if message.endswith(".") else message
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        raise BadInput(f"{message}{where}") from None


class _Commands(click.Group):
    """The ``asyncrl`` group: its own and its commands' usage errors in one line."""

    def make_context(self, *args, **kwargs):
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_usage_errors():
            return super().invoke(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
