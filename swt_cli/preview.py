"""PNG previews: one image of a batch, or the coverage heat map of a fold geometry (needs Pillow).

Axis layout of an array file: the last 2 axes are the image ``(H, W)`` (the last 3 with ``ndim=3``:
``(D, H, W)``, of which the middle ``D`` slice is shown; with ``ndim=1`` the ``(L,)`` axis is shown as
one row). The axis before them holds the channels; every axis before that is the batch, which
``index`` counts through in row-major order. So ``(H, W)`` is one grey image, ``(C, H, W)`` one image
of ``C`` channels and ``(N, C, H, W)`` a batch. One channel is grey, three are RGB, and any other number
shows ``channel`` (default 0) in grey. Values are scaled from the image's own minimum (0) to its maximum
(255); a constant image is mid grey (128) and NaN is 0. Complex values show their magnitude.

>>> to_uint8(np.array([[0.0, 1.0], [np.nan, 0.5]]))
array([[  0, 255],
       [  0, 128]], dtype=uint8)
"""

from __future__ import annotations

import math

import numpy as np

from .errors import SwtError
from .formats import Location, open_reader
from .formats.base import OutputAppeared, check_destination, commit_path, remove_path, temp_sibling
from .geometry import fmt_shape

#: Heat-map colours from no coverage (black) through purple, red and orange to the most (pale yellow).
HEAT = np.array([[0, 0, 0], [60, 15, 110], [180, 40, 80], [245, 125, 20], [252, 255, 164]], np.float64)


def pillow():
    """The ``PIL.Image`` module, or an error that says how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise SwtError("swt preview needs Pillow: pip install 'swt-cli[preview]'") from None
    return Image


def to_uint8(image) -> np.ndarray:
    """``image`` scaled from its own finite minimum to maximum onto 0..255 (constant: 128; NaN: 0)."""
    x = np.asarray(image)
    if x.dtype.kind == "c":
        x = np.abs(x)
    x = x.astype(np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.where(np.isposinf(x), 255, 0).astype(np.uint8)
    lo, hi = float(x[finite].min()), float(x[finite].max())
    if hi > lo:
        scaled = (x - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.where(finite, 128.0, x)
    scaled = np.where(np.isnan(scaled), 0.0, scaled)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def heat_colors(counts) -> np.ndarray:
    """Counts (0..max) as RGB uint8 through :data:`HEAT`; 0 is black, the maximum pale yellow."""
    counts = np.asarray(counts, np.float64)
    top = counts.max() if counts.size else 0.0
    t = counts / top if top > 0 else counts
    stops = np.linspace(0.0, 1.0, len(HEAT))
    rgb = np.stack([np.interp(t, stops, HEAT[:, c]) for c in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def _as_2d(image: np.ndarray, ndim: int) -> np.ndarray:
    """The picture of one spatial image: the middle slice of a volume, one row of a 1-d signal."""
    if ndim == 3:
        return image[..., image.shape[-3] // 2, :, :]
    if ndim == 1:
        return image[..., None, :]
    return image


def window_axis_names(lead: int, ndim: int) -> tuple[str, ...]:
    """Names of the ``lead`` axes before the kernel's in windows ``(..., N, C, I1..ID, K1..KD)``, in words.

    >>> window_axis_names(4, 2)
    ('item', 'channel', 'window row', 'window column')
    """
    grid = {1: ("window",), 2: ("window row", "window column"), 3: ("window depth", "window row", "window column")}[ndim]
    names = ("item", "channel", *grid)
    if lead <= len(names):
        return names[len(names) - lead:]
    return tuple(f"batch axis {i}" for i in range(lead - len(names))) + names


def _windows_ndim(reader, shape: tuple, ndim: int, channel: int | None) -> tuple[int | None, bool]:
    """The spatial axes of a windows file in MegEngine's layout (None for images), and whether that was read
    from the shape alone.

    A file ``swt unfold`` recorded says so. An array without any swt record (a .npy, which keeps none) is
    windows where it has the ``2 * ndim + 2`` axes ``(N, C, I1..ID, K1..KD)`` of ``swt unfold``'s output and
    no ``channel`` was asked for (which reads it as images).
    """
    from .jobs import recorded_geometry

    record = recorded_geometry(reader)
    if not record:
        return (ndim, True) if channel is None and len(shape) == 2 * ndim + 2 else (None, False)
    kernel = tuple(record.get("kernel_size") or ())
    if record.get("op") != "unfold" or record.get("layout", "megengine") != "megengine" or not 1 <= len(kernel) <= 3:
        return None, False
    return (len(kernel) if len(shape) >= 2 * len(kernel) and shape[-len(kernel):] == kernel else None), False


def read_image(path: str | Location, index: int = 0, channel: int | None = None, ndim: int = 2, allow_external: bool = False):
    """Read only image ``index`` of the array at ``path``: ``(H, W)`` grey or ``(H, W, 3)`` RGB, and a
    description of what was read.

    A windows file written by ``swt unfold`` (``(N, C, IH, IW, KH, KW)``) shows one window in grey: ``index``
    counts its windows row-major over item, channel, window row and window column, and the description
    names each. So does an array of that many axes without a swt record (a .npy) unless ``channel`` is given.
    """
    with open_reader(path, allow_external) as reader:
        shape = tuple(reader.shape)
        windows, by_shape = _windows_ndim(reader, shape, ndim, channel)
        if windows is not None:
            if channel is not None:
                names = ", ".join(window_axis_names(len(shape) - windows, windows))
                raise SwtError(f"{path} holds windows {fmt_shape(shape)}: each picture is one window in grey, so --channel "
                               f"does not apply; --index counts windows over {names}")
            ndim = windows
        if len(shape) < ndim:
            raise SwtError(f"{path} has shape {fmt_shape(shape)}: too few axes for a {ndim}-d image")
        has_channels = len(shape) > ndim and windows is None
        batch = shape[: -ndim - 1] if has_channels else shape[:-ndim] if windows is not None else ()
        channels = shape[-ndim - 1] if has_channels else 1
        count = math.prod(batch)
        if not 0 <= index < max(count, 1) or count == 0:
            kind = "window" if windows is not None else "image"
            raise SwtError(f"{path} holds {count} {kind}{'s' if count != 1 else ''} of shape {fmt_shape(shape[len(batch):])}: "
                           f"no index {index}")
        if not math.prod(shape[-ndim:]) or not channels:
            image = fmt_shape(shape[-ndim - 1:] if has_channels else shape[-ndim:])
            raise SwtError(f"{path} has shape {fmt_shape(shape)}: its images {image} are empty: nothing to draw")
        if channel is not None and not 0 <= channel < channels:
            raise SwtError(f"{path}: images have {channels} channel{'s' if channels != 1 else ''}, no channel {channel}")
        rgb = channels == 3 and channel is None
        pick = None if rgb or not has_channels else (channel or 0)
        item = lambda i: tuple(slice(j, j + 1) for j in np.unravel_index(i, batch)) if batch else ()  # noqa: E731
        sel = item(index)
        if reader.sequential:  # a pipe: read (and drop) the images before this one, then the whole image
            for i in range(index):
                reader.read(item(i))
            block = reader.read(sel)
        elif pick is not None:  # read one channel only
            block, pick = reader.read(sel + (slice(pick, pick + 1),)), 0
        else:
            block = reader.read(sel)
        block = np.asarray(block).reshape(block.shape[len(sel):])
        if pick is not None:
            block = block[pick]
        block = _as_2d(block, ndim)
        if rgb:
            block = np.moveaxis(block, 0, -1)
        if windows is not None:
            axes = window_axis_names(len(batch), windows)
            where = ", ".join(f"{name} {i}" for name, i in zip(axes, np.unravel_index(index, batch)))
            guessed = (f"; no swt record: its {len(shape)} axes read as windows, --channel reads them as images"
                       if by_shape else "")
            return block, (f"window {index} of {count} ({where}; --index counts windows row-major over "
                           f"{', '.join(axes)}{guessed})")
        what = f"image {index} of {fmt_shape(batch)}" if batch else "the image"
        if rgb:
            what += " (RGB)"
        elif channels > 1:
            what += f" channel {channel or 0} of {channels}"
        return block, what


def check_png(out: str, overwrite: bool = False) -> None:
    """Refuse an output that is not a .png, or one that exists without ``overwrite``, before any work."""
    if not out.lower().endswith(".png"):
        raise SwtError(f"{out}: a preview is a PNG: name it something.png")
    check_destination(out, overwrite)


def save_png(pixels: np.ndarray, out: str, overwrite: bool = False) -> None:
    """Write ``pixels`` (``(H, W)`` grey or ``(H, W, 3)`` RGB, uint8) as a PNG, atomically."""
    Image = pillow()
    check_png(out, overwrite)
    temp = temp_sibling(out)
    try:
        Image.fromarray(np.ascontiguousarray(pixels), "RGB" if pixels.ndim == 3 else "L").save(temp, format="PNG")
        commit_path(temp, out, overwrite=overwrite)
    except OutputAppeared:
        raise  # the finished PNG stays under its temporary name, which the message gives
    except BaseException:
        remove_path(temp)
        raise


def preview_image(path: str | Location, out: str, index: int = 0, channel: int | None = None, ndim: int = 2,
                  overwrite: bool = False, allow_external: bool = False) -> str:
    """Save image ``index`` of ``path`` as the PNG ``out``; returns a description of what was drawn."""
    pillow()
    image, what = read_image(path, index, channel, ndim, allow_external)
    save_png(to_uint8(image), out, overwrite)
    return f"{what}, {image.shape[1]}x{image.shape[0]} pixels"


def preview_coverage(counts: np.ndarray, out: str, overwrite: bool = False) -> str:
    """Save the coverage counts of one output image (its middle slice for 3-d) as a heat-map PNG."""
    pillow()
    picture = _as_2d(counts, counts.ndim)
    save_png(heat_colors(picture), out, overwrite)
    return f"coverage {int(picture.min())} to {int(picture.max())} windows, {picture.shape[1]}x{picture.shape[0]} pixels"


__all__ = ["check_png", "heat_colors", "pillow", "preview_coverage", "preview_image", "read_image", "save_png", "to_uint8",
           "window_axis_names"]
