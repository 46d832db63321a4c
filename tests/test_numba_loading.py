"""numba loads on a background thread while the first calls (or blocks of a job) run on NumPy; the switch
changes no bit, and where numba cannot be imported everything runs on NumPy without a word.

Each test runs a fresh process (``python -c``): what it checks is the state of one process's loading.
Numba is blocked there, where needed, by ``sys.modules['numba'] = None`` in the launcher, not by anything
in the package.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reference import fold_window_order, unfold_loops
from test_exact import cancelling
from test_kernel_paths import HAVE_NUMBA, kernel

from swt_cli import sliding_window_transpose

REPO = Path(__file__).parents[1]
GEOMETRY = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1), output=(19, 19))

#: Counts which path each fold took, and makes the switch happen at a known point: after the NumPy
#: fold that started the background load the process waits for the load to finish, so the next fold
#: takes numba.
COUNT = """
import sys, threading, numpy as np
from swt_cli import kernels
taken = []
numpy_fold, numba_fold = kernels._fold_numpy, kernels._fold_numba
def counted_numpy(*args):
    taken.append('numpy')  # the main thread's folds: the pipeline transforms blocks there
    numpy_fold(*args)
    if kernels._loader is not None:
        kernels._loader.join(240)
def counted_numba(*args):
    if threading.current_thread() is threading.main_thread():  # not the warm-up on the loader thread
        taken.append('numba')
    numba_fold(*args)
kernels._fold_numpy, kernels._fold_numba = counted_numpy, counted_numba
"""
#: The same where any work repays the load: the first call starts it.
SWITCH = COUNT + "kernels._JIT_WORTH_BYTES = kernels._JOB_JIT_WORTH_BYTES = 0\n"


@pytest.fixture(autouse=True)
def _no_kept_kernels(tmp_path, monkeypatch):
    """Each test's processes keep (and find) the kernels' machine code in a folder of their own, empty at
    the start: what loads when is then numba's doing, unless a test keeps kernels first."""
    monkeypatch.setenv("SWT_CACHE_DIR", str(tmp_path / "cache"))


def _python(code, *args, block_numba=False, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "SWT_KERNEL"}
    launcher = ("import sys; sys.modules['numba'] = None\n" if block_numba else "") + code
    return subprocess.run([sys.executable, "-c", launcher, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def _fold_script(code, x, tmp_path):
    """Run ``code`` with ``x`` saved at ``sys.argv[1]``; it saves its folds at ``sys.argv[2]``: returns them."""
    np.save(tmp_path / "x.npy", x)
    done = _python(code, tmp_path / "x.npy", tmp_path / "y.npy")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return np.load(tmp_path / "y.npy")


def _want(x):
    g = GEOMETRY
    return fold_window_order(x, g["output"], g["kernel"], g["stride"], g["padding"], g["dilation"])


def test_calls_switch_to_numba_when_it_is_ready(tmp_path):
    """The first call starts the load and runs on NumPy; once numba is ready the same call takes it and
    gives the same bits; a small call of another dtype does not start compiling (it stays on NumPy)."""
    x = cancelling((3, 2, 10, 10, 3, 3), np.float32, seed=21)
    code = SWITCH + (
        "from swt_cli import sliding_window_transpose as f\n"
        "x = np.load(sys.argv[1])\n"
        "assert kernels.kernel_name() == 'numpy'\n"
        "y = [f(x, 19, 3, padding=1, stride=2) for _ in range(2)]\n"
        "assert kernels.kernel_name() == 'numba', kernels._jit_error\n"
        "kernels._JIT_WORTH_BYTES = 1 << 40  # from here on, nothing new is warmed\n"
        "f(x.astype(np.float64), 19, 3, padding=1, stride=2)\n"
        "assert taken == ['numpy', 'numba', 'numpy'], taken\n"
        "np.save(sys.argv[2], np.stack(y))\n"
    )
    for got in _fold_script(code, x, tmp_path):
        assert np.array_equal(got, _want(x))


def test_repeated_calls_load_numba_after_the_threshold(tmp_path):
    """With the package's threshold: calls run on NumPy, numba not even imported, until the calls before
    one add up to ``_JIT_WORTH_BYTES``; that call starts the load, and once it is done the next call
    takes numba, with the same bits as the NumPy calls and the plain loops."""
    x = cancelling((6000, 2, 10, 10, 3, 3), np.float32, seed=25)  # 60 MB of work a call: 18 calls reach 1 GiB
    code = COUNT + (
        "from swt_cli import sliding_window_transpose as f\n"
        "x = np.load(sys.argv[1])\n"
        "work = x.nbytes + x.shape[0] * 2 * 19 * 19 * 4\n"
        "before = -(-kernels._JIT_WORTH_BYTES // work)  # calls whose work starts the load at the next one\n"
        "first = f(x, 19, 3, padding=1, stride=2)\n"
        "for _ in range(before - 1):\n"
        "    assert np.array_equal(f(x, 19, 3, padding=1, stride=2), first)\n"
        "assert not kernels._asked and 'numba' not in sys.modules, 'the load started early'\n"
        "assert np.array_equal(f(x, 19, 3, padding=1, stride=2), first)  # starts the load, waits for it\n"
        "assert kernels._asked and kernels.kernel_name() == 'numba', kernels._jit_error\n"
        "y = f(x, 19, 3, padding=1, stride=2)\n"
        "assert taken == ['numpy'] * (before + 1) + ['numba'], taken\n"
        "assert np.array_equal(y, first)\n"
        "np.save(sys.argv[2], y)\n"
    )
    assert np.array_equal(_fold_script(code, x, tmp_path), _want(x))


def test_one_call_however_large_never_starts_the_load():
    """The first call's work, even beyond the threshold, does not start the load (that call could not use
    it); the next call does. A script of small calls (a few MB, like the README's examples) never does."""
    code = (
        "import sys, numpy as np\n"
        "from swt_cli import kernels, sliding_window, sliding_window_transpose as f\n"
        "x = np.ones((4, 2, 10, 10, 3, 3), np.float32)\n"
        "for _ in range(200):  # 16 MB of work in all, on fold and unfold\n"
        "    f(x, 19, 3, padding=1, stride=2); sliding_window(np.ones((4, 2, 19, 19), np.float32), 3, padding=1, stride=2)\n"
        "assert not kernels._asked and 'numba' not in sys.modules, 'small work started the load'\n"
        "kernels._work_seen = 0  # a fresh start, where one call's work exceeds the threshold\n"
        "kernels._JIT_WORTH_BYTES = x.nbytes\n"
        "f(x, 19, 3, padding=1, stride=2)\n"
        "assert not kernels._asked, 'a single call started the load'\n"
        "f(x, 19, 3, padding=1, stride=2)\n"
        "assert kernels._asked\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_job_that_switches_part_way_gives_the_same_bits(tmp_path):
    """A streamed fold whose first block runs on NumPy and the rest on numba writes the same file as an
    all-NumPy and an all-numba run, and the plain loops' bits."""
    assert HAVE_NUMBA, "numba is a core dependency"
    x = cancelling((6, 2, 10, 10, 3, 3), np.float32, seed=22)
    src = tmp_path / "x.npy"
    np.save(src, x)
    fold = ["fold", src, None, "-k", "3", "-s", "2", "-p", "1", "-o", "19", "--batch-size", "2", "-q"]
    code = SWITCH + (
        "from swt_cli.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print(' '.join(taken))\n"
    )
    done = _python(code, *[tmp_path / "switch.npy" if a is None else a for a in fold])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", "numba", "numba"]
    got = np.load(tmp_path / "switch.npy")
    assert np.array_equal(got, _want(x))
    for path in ("numpy", "numba"):  # the same fold on one path throughout
        with kernel(path):
            assert np.array_equal(got, sliding_window_transpose(x, 19, 3, padding=1, stride=2)), path


def test_without_numba_everything_runs_on_numpy_silently(tmp_path):
    """numba blocked: a job large enough to load it runs on NumPy with nothing on stderr; the loader
    ends; forcing numba then says what is wrong, in one line."""
    x = cancelling((4, 2, 10, 10, 3, 3), np.float32, seed=23)
    image = cancelling((2, 3, 12, 12), np.float32, seed=24)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "image.npy", image)
    code = (
        "import os, numpy as np\n"
        "from swt_cli import kernels, sliding_window, sliding_window_transpose as f\n"
        "kernels._JIT_WORTH_BYTES = kernels._JOB_JIT_WORTH_BYTES = 0\n"
        "x, image = np.load(sys.argv[1]), np.load(sys.argv[2])\n"
        "y = [f(x, 19, 3, padding=1, stride=2) for _ in range(3)]\n"
        "w = sliding_window(image, 3, stride=2, padding=1)\n"
        "if kernels._loader is not None:\n"
        "    kernels._loader.join(60)\n"
        "y.append(f(x, 19, 3, padding=1, stride=2))\n"
        "assert kernels._loader is None and kernels._jit_error and kernels.kernel_name() == 'numpy'\n"
        "assert sys.modules['numba'] is None\n"
        "np.save(sys.argv[3], np.stack(y)); np.save(sys.argv[4], w)\n"
        "os.environ['SWT_KERNEL'] = 'numba'\n"
        "try:\n"
        "    f(x, 19, 3, padding=1, stride=2)\n"
        "except kernels.SwtError as err:\n"
        "    print(err)\n"
    )
    done = _python(code, tmp_path / "x.npy", tmp_path / "image.npy", tmp_path / "y.npy", tmp_path / "w.npy",
                   block_numba=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("SWT_KERNEL=numba but numba cannot be imported (")
    for got in np.load(tmp_path / "y.npy"):
        assert np.array_equal(got, _want(x))
    assert np.array_equal(np.load(tmp_path / "w.npy"), unfold_loops(image, (3, 3), (2, 2), (1, 1), (1, 1)))

    # The command line, numba blocked: forcing it is a one-line error; the default runs, quietly.
    src, out = tmp_path / "x.npy", tmp_path / "out.npy"
    cli = "from swt_cli.cli import main\nmain()\n"
    args = ["fold", src, out, "-k", "3", "-s", "2", "-p", "1", "-o", "19", "-q", "--overwrite"]
    env = dict(os.environ, SWT_KERNEL="numba")
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['numba'] = None\n" + cli, *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "SWT_KERNEL=numba but numba cannot be imported" in done.stderr
    done = _python(cli, *args, block_numba=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert np.array_equal(np.load(out), _want(x))


# ------------------------------------------------------------------ kernels kept as native code on disk

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


def test_kernels_numba_ran_are_kept_and_later_run_without_numba(tmp_path):
    """A process whose kernels ran on numba leaves their machine code in SWT_CACHE_DIR; the next process
    runs the same calls from those files with numba blocked, to the bit of the window-order loops."""
    x = cancelling((3, 2, 10, 10, 3, 3), np.float32, seed=31)
    got, state = _kept_calls(x, tmp_path)
    _assert_same(got, _kept_want(x))
    assert state == {"numba": True, "native": False}
    kept = os.listdir(tmp_path / "cache" / "native")
    assert {name.split("-")[0] for name in kept} == {"fold_planes", "fold_planes_tiled", "unfold_planes", "unfold_planes_3x3"}
    got, state = _kept_calls(x, tmp_path, block_numba=True)
    _assert_same(got, _kept_want(x))
    assert state == {"numba": False, "native": True}


def test_damaged_kept_kernels_are_passed_over(tmp_path):
    """Kept files cut short, overwritten with other bytes, made for another CPU or naming another symbol
    are not loaded: numba runs those kernels and keeps them anew, with the same bits; files that are not
    libraries at all with numba blocked as well: forcing the compiled kernels is the one-line error it was."""
    x = cancelling((3, 2, 10, 10, 3, 3), np.float32, seed=32)
    _kept_calls(x, tmp_path)
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


def test_with_kernels_kept_a_process_takes_them_after_little_work(tmp_path):
    """Kept kernels are loaded (without numba) once a process's calls add up to _NATIVE_WORTH_BYTES,
    far below the threshold at which numba itself would load; the calls then take them, same bits."""
    x = cancelling((400, 2, 10, 10, 3, 3), np.float32, seed=33)  # 4 MB of work a call
    _kept_calls(x, tmp_path)  # keeps the kernels of these folds
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


def test_a_job_takes_kept_kernels_from_half_a_gib(tmp_path):
    """A job announcing 512 MiB of work asks for the kept kernels (not numba); one of 256 MiB does not."""
    x = cancelling((2, 2, 10, 10, 3, 3), np.float32, seed=34)
    _kept_calls(x, tmp_path)
    code = (
        "import sys, numpy as np\n"
        "from swt_cli import kernels, sliding_window_transpose as f\n"
        "x = np.load(sys.argv[1])\n"
        "kernels.expect_work(256 << 20)\n"
        "f(x, 19, 3, padding=1, stride=2)\n"
        "assert not kernels._asked_native and kernels._loader is None\n"
        "kernels.expect_work(512 << 20)\n"
        "f(x, 19, 3, padding=1, stride=2)\n"
        "assert kernels._asked_native and not kernels._asked\n"
        "if kernels._loader is not None:\n"
        "    kernels._loader.join(60)\n"
        "assert kernels.kernel_name() == 'numba' and sys.modules.get('numba') is None\n"
    )
    np.save(tmp_path / "x.npy", x)
    done = _python(code, tmp_path / "x.npy")
    assert done.returncode == 0, done.stderr


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


def test_arrays_kept_kernels_do_not_take_run_on_numpy_where_numba_is_not_loaded(tmp_path):
    """Once kept kernels serve a problem, a call on a misaligned array of it (which they do not take),
    numba blocked and not forced, runs on NumPy: same bits, no error."""
    x = cancelling((400, 2, 10, 10, 3, 3), np.float32, seed=36)
    _kept_calls(x, tmp_path)
    code = (
        "import sys, numpy as np\n"
        "from swt_cli import kernels, sliding_window_transpose as f\n"
        "x = np.load(sys.argv[1])\n"
        "want = f(x, 19, 3, padding=1, stride=2)\n"
        "for _ in range(12):  # past _NATIVE_WORTH_BYTES: the kept kernels load\n"
        "    f(x, 19, 3, padding=1, stride=2)\n"
        "if kernels._loader is not None:\n"
        "    kernels._loader.join(60)\n"
        "assert kernels._compiled.native_loaded\n"
        "raw = np.zeros(x.nbytes + 1, np.uint8)\n"
        "odd = np.frombuffer(raw.data, np.float32, x.size, offset=1).reshape(x.shape)  # misaligned\n"
        "odd[...] = x\n"
        "assert not odd.flags.aligned\n"
        "assert np.array_equal(f(odd, 19, 3, padding=1, stride=2), want)\n"
        "assert np.array_equal(f(x, 19, 3, padding=1, stride=2), want)\n"
    )
    np.save(tmp_path / "x.npy", x)
    done = _python(code, tmp_path / "x.npy", block_numba=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
