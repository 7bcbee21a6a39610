"""User-facing errors.

Every problem a user can fix (a bad file, a missing variable, an unknown name) is raised as
:class:`UserError` with a message that names the place. The CLI prints it on one line and exits
with status 2; nothing is written to the store before the input has been validated.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager


class UserError(Exception):
    """A problem with the user's input, reported as one line, exit status 2."""

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


@contextmanager
def reported():
    """In a command: a UserError becomes one line on stderr and exit status 2, so a script can
    tell bad input (2) from a crash (1); Ctrl-C says that the work so far is kept."""
    import typer

    from monoculture.terminal import stderr_console, styled

    try:
        yield
    except UserError as e:
        # the message quotes the user's file names and cells: printed as typed, never as markup
        stderr_console().print(styled("[red]error:[/red] {}", e), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr_console().print(
            styled("[yellow]interrupted[/yellow]: everything written so far is kept; run the same command again to resume")
        )
        raise typer.Exit(130) from None


def user_errors(fn):
    """:func:`reported` as a decorator for typer commands."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with reported():
            return fn(*args, **kwargs)

    return wrapper
