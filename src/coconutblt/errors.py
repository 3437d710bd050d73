"""One exception type for mistakes a user can fix.

The CLI turns a `UserError` into one line on stderr and exit status 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input: a path, a data line, a config key, a checkpoint.

    The message names the thing and the fix, in one line.
    """
