"""The CLI's one error for bad input: one line on stderr, exit status 2, no traceback."""

import click


class BadInput(click.ClickException):
    """A file, option or request that cannot be used. Click prints ``Error: <message>`` (and,
    unlike ``click.UsageError``, no usage lines above it) and exits with status 2."""

    exit_code = 2
