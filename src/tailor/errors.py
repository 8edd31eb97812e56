"""The one exception type for mistakes a user can fix: the CLI prints its message, no traceback."""


class TailorError(Exception):
    """A user-facing error whose message names the file, line or spec key and what was expected."""
