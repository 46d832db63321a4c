"""Object stores and other fsspec URLs (``s3://``, ``gs://``, ``az://``, ``https://``, ``memory://``).

A path is a URL when it starts with ``scheme://``; anything else is a local path and never goes through
fsspec. ``file://`` URLs are local paths. fsspec and its drivers (s3fs, gcsfs, adlfs) are imported only
when a URL is given, with an error naming the ``cloud`` extra where one is missing.

Credentials and endpoints come the way the user's other tools take them: the provider's own chain
(environment, config files, instance roles), fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>`` environment
variables, and ``--storage-options`` (JSON, or ``@file.json``) for anything else.

>>> is_url("s3://bucket/w.zarr"), is_url("w.zarr"), is_url("file:///tmp/w.npy")
(True, False, False)
>>> local_path("file:///tmp/w.npy")
'/tmp/w.npy'
>>> redact_argv(["swt", "fold", "s3://b/w.zarr", "s3://b/i.zarr", "--storage-options", '{"secret": "x"}'])
['swt', 'fold', 's3://b/w.zarr', 's3://b/i.zarr', '--storage-options', '<redacted>']
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import SwtError, first_line, redact_urls

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")

#: The package each protocol needs, as the ``cloud`` extra installs it (https needs aiohttp, which fsspec
#: does not require).
DRIVERS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
           "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp"}

#: Protocols swt reads but never writes.
READ_ONLY = {"http", "https"}

EXTRA = "pip install 'swt-cli[cloud]'"


def scheme(path: str) -> str | None:
    """The URL's protocol (``"s3"``), or None for a local path."""
    match = _URL.match(path)
    return match["scheme"].lower() if match else None


def is_url(path: str) -> bool:
    """Whether ``path`` names a file or store through fsspec (a ``scheme://`` other than ``file://``)."""
    return scheme(path) not in (None, "file")


def local_path(spec: str) -> str:
    """``spec`` with a ``file://`` prefix taken off (``file:///x`` and ``file://localhost/x`` are ``/x``; a
    local path as it is); other URLs with their protocol in lower case, as URLs' protocols are
    case-insensitive and fsspec's names are lower case (``S3://b/x`` is ``s3://b/x``).

    >>> local_path("file://localhost/tmp/w.npy"), local_path("S3://bucket/w.zarr")
    ('/tmp/w.npy', 's3://bucket/w.zarr')
    """
    proto = scheme(spec)
    if proto is None:
        return spec
    rest = spec[len(proto) + len("://"):]
    if proto != "file":
        return f"{proto}://{rest}"
    host, slash, _ = rest.partition("/")
    if host.lower() == "localhost":
        return rest[len(host):]
    if host and slash:
        raise SwtError(f"{spec}: a file:// URL names a file on this machine (file:///path or file://localhost/path), "
                       f"not on host {host!r}")
    return rest


def parse_options(text: str | None) -> dict | None:
    """``--storage-options``: a JSON object, or ``@file.json`` holding one; None where not given."""
    if text is None or text == "":
        return None
    where = "--storage-options"
    if text.startswith("@"):
        where = text[1:]
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise SwtError(f"--storage-options {text}: cannot read {err.filename}: {err.strerror}") from None
    try:
        value = json.loads(text)
    except ValueError as err:
        raise SwtError(f"{where} is not JSON ({err}): give an object such as "
                       "'{\"endpoint_url\": \"http://127.0.0.1:9000\"}', or @file.json") from None
    if not isinstance(value, dict):
        raise SwtError(f"{where} must be a JSON object of fsspec storage options, not {type(value).__name__}")
    return value


#: Options whose values are redacted wherever a command is recorded (``--storage-options`` is redacted whole).
_SECRET_FLAGS = ("--storage-options",)


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with secrets taken out, for the ``swt_command`` attribute: inline
    ``--storage-options`` JSON (a ``@file`` name stays) and passwords in URLs (``https://user:pass@host``)."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(arg if arg.startswith("@") else "<redacted>")
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        if flag in _SECRET_FLAGS:
            if eq:
                out.append(arg if value.startswith("@") else f"{flag}=<redacted>")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_urls(arg))
    return out


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise SwtError(f"URLs need fsspec, which is not installed: {EXTRA}") from None
    return fsspec


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url``, with ``options`` on top of fsspec's configuration
    (``FSSPEC_<PROTOCOL>_<OPTION>`` variables) and the provider's own credential chain."""
    fsspec = _fsspec()
    proto = scheme(url) or "file"
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(options or {}))
    except ImportError as err:
        package = DRIVERS.get(proto, first_line(err))
        raise SwtError(f"{proto}:// URLs need {package}, which is not installed: {EXTRA}") from None
    except ValueError as err:
        raise SwtError(f"{url}: {first_line(err)} (fsspec knows no such protocol, or an option is wrong)") from None
    except TypeError as err:
        raise SwtError(f"{url}: a storage option is not one the {proto} driver takes ({first_line(err)})") from None
    return fs, path.rstrip("/")


def check_writable(url: str) -> None:
    """Refuse an output on a read-only protocol (``https://``) before any work."""
    proto = scheme(url)
    if proto in READ_ONLY:
        raise SwtError(f"{url}: {proto}:// is read-only: write the output to a local path or an object store "
                       f"(s3://, gs://, az://)")


def refuse_whole_file_output(url: str, fmt: str) -> None:
    """.npy and HDF5 outputs go to local files: an object store has no rename, so they could not appear whole."""
    what = ".npy" if fmt == "npy" else "HDF5"
    raise SwtError(f"{url}: swt writes {what} outputs only to local files (an object store has no rename, so a "
                   f"half-written file would be visible under its name): write a Zarr store "
                   f"({os.path.splitext(url)[0]}.zarr), or a local file and copy it")


#: The packages of fsspec and its drivers: a TypeError raised in their code is an option they do not take.
_DRIVER_PACKAGES = ("fsspec", "s3fs", "aiobotocore", "botocore", "boto3", "gcsfs", "adlfs", "azure", "aiohttp")


def driver_option_error(err: BaseException) -> str | None:
    """The one line for a ``TypeError`` that an object store's driver raised for an option it does not take
    (from ``--storage-options`` or fsspec's ``FSSPEC_*`` settings, which reach it only at its first
    request), or None for any other error, which stays what it is."""
    if not isinstance(err, TypeError):
        return None
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    if not last or last.split(".")[0] not in _DRIVER_PACKAGES:
        return None
    return (f"the storage driver refused an option ({first_line(err)}): check --storage-options and any "
            f"FSSPEC_<PROTOCOL>_<OPTION> environment variables against the driver's documentation")


@contextlib.contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Failures of an object store (missing credentials, no such bucket, refused access, an unreachable
    endpoint) as one line naming the URL and what to check."""
    try:
        yield
    except SwtError:
        raise
    except FileNotFoundError as err:
        raise SwtError(f"no such file or store: {url} ({first_line(err)})") from None
    except PermissionError as err:
        raise SwtError(f"{url}: access denied ({first_line(err)}): check the credentials (the provider's environment "
                       f"variables or config files, or --storage-options)") from None
    except Exception as err:  # botocore, aiohttp and the drivers raise many types, few of them OSError
        name = type(err).__name__
        if "Credential" in name or "credential" in str(err):
            raise SwtError(f"{url}: no credentials ({first_line(err)}): configure them as for your other tools (for "
                           f"S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance role) or "
                           f"pass --storage-options") from None
        if isinstance(err, (OSError, TimeoutError)) or "Connect" in name or "Endpoint" in name:
            raise SwtError(f"cannot reach {url} ({name}: {first_line(err)}): check the endpoint "
                           f"(FSSPEC_{(scheme(url) or '').upper()}_ENDPOINT_URL or --storage-options)") from None
        raise


def create_exclusive(fs: Any, path: str, data: bytes) -> bool:
    """Create the object ``path`` holding ``data`` unless something is there: True where this call created
    it. On S3 (s3fs) one conditional PUT (``If-None-Match: *``); elsewhere fsspec's ``xb`` mode where the
    driver has it. Where the store cannot create exclusively, the object is written and read back: a
    creator that finds another's bytes lost the race (a store that keeps the first write makes both lose;
    see the README)."""
    try:
        fs.pipe_file(path, data, mode="create")
        return True
    except FileExistsError:
        return False
    except (TypeError, ValueError, NotImplementedError):  # a driver without exclusive create
        pass
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False
    except (TypeError, ValueError, NotImplementedError):
        pass
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    fs.invalidate_cache(path)
    return fs.cat_file(path) == data


def fresh(fs: Any, path: str) -> None:
    """Forget what the driver cached of ``path`` (listings): other processes write shared outputs."""
    with contextlib.suppress(Exception):
        fs.invalidate_cache(path)


def listdir(fs: Any, folder: str) -> list[str]:
    """The base names directly under ``folder`` (none where it does not exist), never from a cache."""
    fresh(fs, folder)
    try:
        return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _canonical(url: str) -> str:
    """``url`` as its driver names it: the protocol's first name, its path with runs of slashes made one."""
    proto = scheme(url) or "file"
    path = url.split("://", 1)[1] if "://" in url else url
    try:
        cls = _fsspec().get_filesystem_class(proto)
        names = cls.protocol
        proto = names if isinstance(names, str) else names[0]
        path = cls._strip_protocol(url)
    except (ImportError, ValueError, SwtError):  # no driver: the URL as written
        pass
    return f"{proto}://{re.sub('/+', '/', path).rstrip('/')}"


def same_or_inside(a: str, b: str) -> str | None:
    """How URL ``b`` relates to URL ``a``: ``"same"``, ``"inside"`` (b lies in a), ``"holds"`` (b holds a), or None.

    Both are compared as the driver sees them: one name for a protocol's aliases (``s3a://`` is ``s3://``)
    and runs of slashes as one (s3fs lists ``bkt//w.zarr`` as ``bkt/w.zarr``, so deleting the one deletes
    the other).

    >>> same_or_inside("s3://b/w.zarr/", "s3://b/w.zarr"), same_or_inside("s3://b/w.zarr", "s3://b/w.zarr/x.zarr")
    ('same', 'inside')
    """
    a, b = _canonical(a), _canonical(b)
    if a == b:
        return "same"
    if b.startswith(a + "/"):
        return "inside"
    if a.startswith(b + "/"):
        return "holds"
    return None
