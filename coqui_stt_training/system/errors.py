"""The one kind of error a user can act on.

Every module's error (a bad flag, CSV row, audio file, alphabet, checkpoint or scorer) derives from
UserError, and its message names the file, row or flag and the problem. The command line shows a
UserError as one line and exits with status 1; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's flags, data or files, told in one line."""


def os_error_line(e: OSError) -> str:
    """An OSError the code did not explain (a full disk, a read-only folder), as the user reads it: the
    file, then the system's words."""
    return (f"{e.filename}: " if e.filename else "") + str(e.strerror or e)


class ConfigError(UserError):
    """A flag's value, flags that contradict each other, or what a flag names (a missing directory, an output
    that cannot be written), told by the flag or the path."""


class UnsupportedFlagError(UserError):
    """A flag asks for something this implementation does not do (yet): refused rather than ignored."""
