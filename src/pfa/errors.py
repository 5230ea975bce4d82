"""The one exception type for mistakes a user can fix (paths, shapes, names, files)."""


class UserError(Exception):
    """A problem with the user's input; entry points print its message on one line and exit non-zero."""
