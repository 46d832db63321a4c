"""The one exception type of swt."""


class SwtError(ValueError):
    """Anything wrong with the data, the geometry or a file, in words a user can act on.

    The command line prints its message as one line and exits with code 1.
    """
