"""numba loads on a background thread while the first calls (or blocks of a job) run on NumPy; the switch
changes no bit, and where numba cannot be imported everything runs on NumPy without a word.

Each test runs a fresh process (``python -c``): what it checks is the state of one process's loading.
Numba is blocked there, where needed, by ``sys.modules['numba'] = None`` in the launcher, not by anything
in the package.
"""

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
