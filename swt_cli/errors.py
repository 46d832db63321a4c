"""The one exception type of swt."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (at most ``limit`` characters), or its type's name."""
    text = str(err).strip().splitlines()
    return text[0][:limit] if text else type(err).__name__


class SwtError(ValueError):
    """Anything wrong with the data, the geometry or a file, in words a user can act on.

    The command line prints its message as one line and exits with code 1.
    """


class OptionError(SwtError):
    """A combination of options (or arguments) that cannot work; the command line exits 2 for it."""
