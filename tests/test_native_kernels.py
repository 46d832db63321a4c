"""Kernels kept as native code (swt_cli._native): numba's machine code for each kernel variant it ran,
kept on disk as a small shared library, run by later processes without numba, to the same bits.

Each test runs fresh processes (``python -c``) on a cache folder of its own (``SWT_CACHE_DIR``), copied
from one that a first process filled by running the kernels on numba (the module's fixture: compiling
and linking them takes seconds).
"""

import json
import os
import shutil

import numpy as np
import pytest
from reference import fold_window_order, unfold_loops
from test_exact import cancelling
from test_numba_loading import COUNT, _fold_script, _python, _want

#: Folds and unfolds that take every entry point of the compiled kernels, in several dtypes; saves
#: their results at sys.argv[2] and, last, whether numba was imported and which variants ran natively.
KEPT_CALLS = """
import sys, json, numpy as np
from swt_cli import kernels, sliding_window, sliding_window_transpose as f
x = np.load(sys.argv[1])
results = [
    f(x, 19, 3, padding=1, stride=2),                                    # fold_planes, float32, by phase
    f(x.astype(np.float64), 21, 3, padding=1, stride=2, dilation=2),     # float64, dilated
    f(x[..., :2, :2], 20, 2, stride=2),                                  # no overlap: words
    sliding_window(x[0, :, 0, 0], 3, stride=(1, 2)),                     # unfold_planes_3x3
    sliding_window(x[0, :, 0, 0].astype(np.float64), (2, 3), stride=1),  # unfold_planes, 8-byte items
]
np.savez(sys.argv[2], *results)
if kernels._loader is not None:
    kernels._loader.join(240)
print(json.dumps({"numba": sys.modules.get("numba") is not None, "native": kernels._compiled.native_loaded}))
"""


def _kept_calls(x, tmp_path, block_numba=False, kernel="numba"):
    np.save(tmp_path / "x.npy", x)
    done = _python(f"import os; os.environ['SWT_KERNEL'] = {kernel!r}\n" + KEPT_CALLS,
                   tmp_path / "x.npy", tmp_path / "y.npz", block_numba=block_numba)
    assert done.returncode == 0, done.stderr
    got = np.load(tmp_path / "y.npz")
    return [got[f"arr_{i}"] for i in range(len(got.files))], json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A cache folder that one process filled by running KEPT_CALLS on numba; its input, results and state."""
    folder = tmp_path_factory.mktemp("kept")
    x = cancelling((3, 2, 10, 10, 3, 3), np.float32, seed=31)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SWT_CACHE_DIR", str(folder / "cache"))
        got, state = _kept_calls(x, folder)
    return folder / "cache", x, got, state


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test's processes keep and find kernels in a folder of their own (tmp_path / "cache")."""
    monkeypatch.setenv("SWT_CACHE_DIR", str(tmp_path / "cache"))


def _copy_kept(kept, tmp_path):
    shutil.copytree(kept[0], tmp_path / "cache")


def _run_on_kept(kept, tmp_path, x, body, block_numba=False):
    """``body`` in a fresh process on a copy of the kept kernels, with ``kernels``, ``f`` (the fold) and
    ``x`` (saved and loaded) at hand; it must end well and print nothing on stderr."""
    _copy_kept(kept, tmp_path)
    np.save(tmp_path / "x.npy", x)
    prelude = ("import sys, numpy as np\n"
               "from swt_cli import kernels, sliding_window_transpose as f\n"
               "x = np.load(sys.argv[1])\n"
               "def settled():  # the loader thread done (it ends itself once its queue is empty)\n"
               "    if kernels._loader is not None:\n"
               "        kernels._loader.join(60)\n"
               "    return True\n")
    done = _python(prelude + body, tmp_path / "x.npy", block_numba=block_numba)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def _kept_want(x):
    image = x[0, :, 0, 0]
    return [fold_window_order(x, (19, 19), (3, 3), (2, 2), (1, 1), (1, 1)),
            fold_window_order(x.astype(np.float64), (21, 21), (3, 3), (2, 2), (1, 1), (2, 2)),
            fold_window_order(x[..., :2, :2], (20, 20), (2, 2), (2, 2), (0, 0), (1, 1)),
            unfold_loops(image, (3, 3), (1, 2), (0, 0), (1, 1)),
            unfold_loops(image.astype(np.float64), (2, 3), (1, 1), (0, 0), (1, 1))]


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


def test_kernels_numba_ran_are_kept_and_later_run_without_numba(kept, tmp_path):
    """A process whose kernels ran on numba leaves their machine code in SWT_CACHE_DIR; the next process
    runs the same calls from those files with numba blocked, to the bit of the window-order loops."""
    _, x, got, state = kept
    _assert_same(got, _kept_want(x))
    assert state == {"numba": True, "native": False}
    names = os.listdir(kept[0] / "native")
    assert {name.split("-")[0] for name in names} == {"fold_planes", "fold_planes_tiled", "unfold_planes", "unfold_planes_3x3"}
    _copy_kept(kept, tmp_path)
    got, state = _kept_calls(x, tmp_path, block_numba=True)
    _assert_same(got, _kept_want(x))
    assert state == {"numba": False, "native": True}


def test_damaged_kept_kernels_are_passed_over(kept, tmp_path):
    """Kept files cut short, overwritten with other bytes, made for another CPU or naming another symbol
    are not loaded: numba runs those kernels and keeps them anew, with the same bits; files that are not
    libraries at all with numba blocked as well: forcing the compiled kernels is the one-line error it was."""
    x = cancelling((3, 2, 10, 10, 3, 3), np.float32, seed=32)
    _copy_kept(kept, tmp_path)
    folder = tmp_path / "cache" / "native"
    files = sorted(folder.iterdir())
    for i, path in enumerate(files):
        data = path.read_bytes()
        if i % 4 == 0:
            path.write_bytes(data[: len(data) // 2])
        elif i % 4 == 1:
            path.write_bytes(data[:-64] + bytes(64))
        elif i % 4 == 2:
            path.write_bytes(data.replace(b'"cpu": "', b'"cpu": "not-'))
        else:  # a record naming another function of the library (one of the traps), checksum intact
            path.write_bytes(data.replace(b'"symbol": "cfunc.', b'"symbol": "numba_do_raise", "was": "'))
    assert any(b"numba_do_raise" in p.read_bytes() for p in files)
    got, state = _kept_calls(x, tmp_path)
    _assert_same(got, _kept_want(x))
    assert state == {"numba": True, "native": False}
    got, state = _kept_calls(x, tmp_path, block_numba=True)  # kept anew, whole, by the run on numba
    _assert_same(got, _kept_want(x))
    assert state == {"numba": False, "native": True}
    for path in files:
        path.write_bytes(b"swt-native-1\n" + bytes(8))
    np.save(tmp_path / "x.npy", x)
    done = _python("import os; os.environ['SWT_KERNEL'] = 'numba'\n" + KEPT_CALLS, tmp_path / "x.npy",
                   tmp_path / "y.npz", block_numba=True)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "swt_cli.errors.SwtError: SWT_KERNEL=numba but numba cannot be imported"), done.stderr


def test_with_kernels_kept_a_process_takes_them_after_little_work(kept, tmp_path):
    """Kept kernels are loaded (without numba) once a process's calls add up to _NATIVE_WORTH_BYTES,
    far below the threshold at which numba itself would load; the calls then take them, same bits."""
    x = cancelling((400, 2, 10, 10, 3, 3), np.float32, seed=33)  # 4 MB of work a call
    _copy_kept(kept, tmp_path)  # the kernels of these folds
    code = COUNT + (
        "from swt_cli import sliding_window_transpose as f\n"
        "x = np.load(sys.argv[1])\n"
        "work = x.nbytes + x.shape[0] * 2 * 19 * 19 * 4\n"
        "before = -(-kernels._NATIVE_WORTH_BYTES // work)\n"
        "assert before * work < kernels._JIT_WORTH_BYTES // 8\n"
        "first = f(x, 19, 3, padding=1, stride=2)\n"
        "for _ in range(before - 1):\n"
        "    assert np.array_equal(f(x, 19, 3, padding=1, stride=2), first)\n"
        "assert not kernels._asked_native, 'the load started early'\n"
        "assert np.array_equal(f(x, 19, 3, padding=1, stride=2), first)  # starts the load, waits for it\n"
        "y = f(x, 19, 3, padding=1, stride=2)\n"
        "assert taken == ['numpy'] * (before + 1) + ['numba'], taken\n"
        "assert sys.modules.get('numba') is None and not kernels._asked, 'numba was imported'\n"
        "assert kernels.kernel_name() == 'numba'\n"
        "np.save(sys.argv[2], y)\n"
    )
    assert np.array_equal(_fold_script(code, x, tmp_path), _want(x))


def test_a_job_takes_kept_kernels_from_half_a_gib(kept, tmp_path):
    """A job announcing 512 MiB of work asks for the kept kernels (not numba); one of 256 MiB does not."""
    x = cancelling((2, 2, 10, 10, 3, 3), np.float32, seed=34)
    _run_on_kept(kept, tmp_path, x, """
kernels.expect_work(256 << 20)
f(x, 19, 3, padding=1, stride=2)
assert not kernels._asked_native and kernels._loader is None
kernels.expect_work(512 << 20)
f(x, 19, 3, padding=1, stride=2)
assert kernels._asked_native and not kernels._asked and settled()
assert kernels.kernel_name() == 'numba' and sys.modules.get('numba') is None
""")


def test_without_a_linker_nothing_is_kept_and_numba_runs(tmp_path):
    """Where ``ld`` is not on the PATH, numba runs the kernels as before and nothing is kept."""
    x = cancelling((2, 2, 10, 10, 3, 3), np.float32, seed=35)
    np.save(tmp_path / "x.npy", x)
    code = "import os; os.environ['SWT_KERNEL'] = 'numba'; os.environ['PATH'] = ''\n" + KEPT_CALLS
    done = _python(code, tmp_path / "x.npy", tmp_path / "y.npz")
    assert done.returncode == 0, done.stderr
    got = np.load(tmp_path / "y.npz")
    _assert_same([got[f"arr_{i}"] for i in range(len(got.files))], _kept_want(x))
    assert json.loads(done.stdout.splitlines()[-1]) == {"numba": True, "native": False}
    assert not (tmp_path / "cache" / "native").exists() or not os.listdir(tmp_path / "cache" / "native")


def test_arrays_kept_kernels_do_not_take_run_on_numpy_where_numba_is_not_loaded(kept, tmp_path):
    """Once kept kernels serve a problem, a call on a misaligned array of it (which they do not take),
    numba blocked and not forced, runs on NumPy: same bits, no error."""
    x = cancelling((400, 2, 10, 10, 3, 3), np.float32, seed=36)
    _run_on_kept(kept, tmp_path, x, """
want = f(x, 19, 3, padding=1, stride=2)
for _ in range(12):  # past _NATIVE_WORTH_BYTES: the kept kernels load
    f(x, 19, 3, padding=1, stride=2)
assert settled() and kernels._compiled.native_loaded
raw = np.zeros(x.nbytes + 1, np.uint8)
odd = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)  # misaligned
odd[...] = x
assert not odd.flags.aligned
assert np.array_equal(f(odd, 19, 3, padding=1, stride=2), want)
assert np.array_equal(f(x, 19, 3, padding=1, stride=2), want)
""", block_numba=True)
