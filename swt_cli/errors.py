"""The exception types of swt: :class:`SwtError` and its :class:`OptionError`."""

from __future__ import annotations


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's text (at most ``limit`` characters), or its type's name."""
    text = str(err).strip().splitlines()
    return text[0][:limit] if text else type(err).__name__


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it (``https://user:password@host``) replaced by
    ``<redacted>``: for the messages on stderr and the ``swt_command`` attribute.

    >>> redact_urls("no such Zarr store: https://me:hunter2@example.com/w.zarr")
    'no such Zarr store: https://<redacted>@example.com/w.zarr'
    """
    import re

    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@", r"\1<redacted>@", text)


class SwtError(ValueError):
    """Anything wrong with the data, the geometry or a file, in words a user can act on.

    The command line prints its message as one line and exits with code 1.
    """


class OptionError(SwtError):
    """A combination of options (or arguments) that cannot work; the command line exits 2 for it.

    ``option``: the name of the argument to blame (``"dtype"``), where there is one: the command line then
    names its option (``--dtype``).
    """

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option
