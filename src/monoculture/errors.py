"""User-facing errors.

Every problem a user can fix (a bad file, a missing variable, an unknown name) is raised as
:class:`UserError` with a message that names the place. The CLI prints it on one line and exits
with status 2; nothing is written to the store before the input has been validated.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line, exit status 2."""

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
