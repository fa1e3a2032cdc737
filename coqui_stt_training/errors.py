"""The one kind of error a user can act on.

Every module's error (a bad flag, CSV row, audio file, alphabet, checkpoint or scorer) derives from
UserError, and its message names the file, row or flag and the problem. The command line shows a
UserError as one line and exits with status 1; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's flags, data or files, told in one line."""


class UnsupportedFlagError(UserError):
    """A flag asks for something this implementation does not do (yet): refused rather than ignored."""
