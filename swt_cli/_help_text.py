"""swt's top-level help as Click prints it, for the fast ``swt --help`` of :mod:`swt_cli._entry`.

Written by tests/fast_help.py (run it after changing the group's options or help, or a command's short
help); tests/test_entry.py fails while this differs from what Click prints."""

#: Click's ``max_content_width`` for swt: help wraps at ``min(terminal columns, this) - 2`` characters.
MAX_CONTENT_WIDTH = 100
HELP_OPTIONS = ('-h', '--help')
VERSION_OPTIONS = ('-V', '--version')
#: Set by a shell asking Click for completions.
COMPLETE_VAR = '_SWT_COMPLETE'
#: The help, for terminals of 80 columns and more: HEAD, then the MIDDLE of the text's width, then TAIL.
HEAD = (
    'Usage: swt [OPTIONS] COMMAND [ARGS]...\n'
    '\n'
)
#: (narrowest, widest text width, the lines between HEAD and TAIL at those widths).
MIDDLE = (
    (78, 81, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images\n'
        '  into windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://,\n'
        '  az://, https:// URLs go through fsspec.\n'
    )),
    (82, 82, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images\n'
        '  into windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://, az://,\n'
        '  https:// URLs go through fsspec.\n'
    )),
    (83, 90, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images into\n'
        '  windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://, az://,\n'
        '  https:// URLs go through fsspec.\n'
    )),
    (91, 91, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images into\n'
        '  windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://, az://, https://\n'
        '  URLs go through fsspec.\n'
    )),
    (92, 95, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images into windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://, az://, https://\n'
        '  URLs go through fsspec.\n'
    )),
    (96, 97, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images into windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as\n'
        '  file.h5:/group/name; - is a .npy stream on stdin or stdout; s3://, gs://, az://, https:// URLs\n'
        '  go through fsspec.\n'
    )),
    (98, 98, (
        '  swt: fold windows back into images (sliding-window transpose) and cut images into windows.\n'
        '\n'
        '  Files: .npy, HDF5 (.h5, .hdf5) and Zarr v3 (.zarr); name an array inside as file.h5:/group/name;\n'
        '  - is a .npy stream on stdin or stdout; s3://, gs://, az://, https:// URLs go through fsspec.\n'
    )),
)
TAIL = (
    '\n'
    '  Example:\n'
    '    swt unfold img.npy - -k 3 -s 2 | swt fold - out.h5 -k 3 -s 2 --output-size 64\n'
    '\n'
    'Options:\n'
    '  -V, --version  Show the version and exit.\n'
    '  -h, --help     Show this message and exit.\n'
    '\n'
    'Commands:\n'
    '  fold     Fold windows back into images (sliding-window transpose).\n'
    "  info     Show an array file's shape, dtype, chunks and swt geometry.\n"
    "  plan     Show a fold's window grid, output sizes, coverage and memory.\n"
    "  preview  Save one image of a file, or a fold's coverage, as a PNG.\n"
    '  unfold   Cut images into windows (sliding window).'
)
