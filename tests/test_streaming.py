"""Streaming: blocks within the memory budget, progress on stderr only, results independent of blocking."""

import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from clitools import SWT, invoke, run_swt
from numpy.lib.format import open_memmap

from swt_cli import sliding_window, sliding_window_transpose
from swt_cli.blocks import plan_blocks

PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, done.returncode)\n"
)


def peak_rss(*args):
    """Peak resident memory, in bytes, of one ``swt`` process (the only child of a fresh parent).

    The kernel path is pinned, so a tiny run loads the same libraries as a large one.
    """
    env = dict(os.environ, SWT_KERNEL="numba" if importlib.util.find_spec("numba") else "numpy")
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, SWT, *map(str, args)], capture_output=True, text=True,
                         check=True, env=env)
    rss, code = out.stdout.split()
    assert code == "0"
    return int(rss)


@pytest.fixture(scope="module")
def big_windows(tmp_path_factory):
    """About 120 MB of windows (1152, 3, 31, 31, 3, 3): far over an 8 MiB budget."""
    path = tmp_path_factory.mktemp("big") / "big.npy"
    array = open_memmap(path, mode="w+", dtype=np.float32, shape=(1152, 3, 31, 31, 3, 3))
    rng = np.random.default_rng(12)
    for start in range(0, 1152, 128):
        array[start:start + 128] = rng.standard_normal((128, 3, 31, 31, 3, 3), dtype=np.float32)
    array.flush()
    del array
    return path


# Each writes a file of over 100 MB (5-7 s under load): .npy runs by default, the other formats with -m slow.
@pytest.mark.parametrize("ext", [".npy", pytest.param(".h5", marks=pytest.mark.slow), pytest.param(".zarr", marks=pytest.mark.slow)])
def test_peak_memory_stays_near_the_budget_for_a_file_larger_than_it(tmp_path, big_windows, ext):
    small = tmp_path / "small.npy"
    np.save(small, np.load(big_windows, mmap_mode="r")[:2])
    baseline = peak_rss("fold", small, tmp_path / f"s{ext}", "-k", "3", "-s", "2", "-q")
    peak = peak_rss("fold", big_windows, tmp_path / f"o{ext}", "-k", "3", "-s", "2", "--max-memory", "8MiB", "-q")
    input_bytes = big_windows.stat().st_size
    assert input_bytes > 100e6
    # Within the 8 MiB budget plus allocator slack above the same command on a tiny input.
    assert peak - baseline < 40e6, (peak, baseline)
    # And the result is right.
    from swt_cli.formats import open_reader

    with open_reader(str(tmp_path / f"o{ext}")) as reader:
        rows = reader.read((slice(1000, 1010),))
    want = sliding_window_transpose(np.load(big_windows, mmap_mode="r")[1000:1010], None, 3, stride=2)
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5)


def test_blocks_align_with_output_chunks_and_cover_everything():
    blocks = plan_blocks((100, 3), (100, 3, 64, 64), 4, 3 * 64 * 64 * 4 * 6, 20 << 20)
    starts = [i[0].start for i in blocks.indexes]
    extent = blocks.indexes[0][0].stop
    assert starts == list(range(0, 100, extent)) and blocks.indexes[-1][0].stop == 100
    assert extent % blocks.chunks[0] == 0 and blocks.chunks[1:] == (3, 64, 64)


def test_one_item_over_budget_splits_the_second_axis():
    blocks = plan_blocks((2, 40), (2, 40, 512, 512), 4, 512 * 512 * 4 * 6, 8 << 20)
    assert all(i[0].stop - i[0].start == 1 for i in blocks.indexes)
    assert len(blocks.indexes) > 2 and blocks.chunks[0] == 1
    covered = sorted((i[0].start, j) for i in blocks.indexes for j in range(i[1].start, i[1].stop))
    assert covered == [(a, b) for a in range(2) for b in range(40)]


def test_results_do_not_depend_on_blocking(tmp_path):
    x = np.random.default_rng(3).standard_normal((2, 37, 40, 40)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    want = sliding_window(x, 5, 2, 3)
    for i, extra in enumerate((["--batch-size", "1"], ["--max-memory", "1MiB"], [])):
        out = tmp_path / f"w{i}.h5"
        result = invoke("unfold", tmp_path / "x.npy", out, "-k", "5", "-p", "2", "-s", "3", "-q", *extra)
        assert result.exit_code == 0, result.stderr
        import h5py

        with h5py.File(out) as f:
            np.testing.assert_array_equal(f["data"][...], want)


def test_progress_in_a_log_is_plain_lines_on_stderr(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((40, 3, 30, 30)).astype(np.float32))
    done = run_swt("unfold", tmp_path / "x.npy", tmp_path / "w.npy", "-k", "3", "--batch-size", "4")
    assert done.returncode == 0 and done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert lines and "\x1b" not in done.stderr.decode() and "\r" not in done.stderr.decode()
    assert re.fullmatch(r"swt unfold: 120/120 items \(100%\), [\d,]+ items/s, done in \d:\d\d:\d\d", lines[-1])
    quiet = run_swt("unfold", tmp_path / "x.npy", tmp_path / "q.npy", "-k", "3", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == b""


def test_progress_on_a_terminal_is_a_live_bar(tmp_path):
    pty = pytest.importorskip("pty")
    import os

    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((8, 3, 30, 30)).astype(np.float32))
    pid, fd = pty.fork()
    if pid == 0:  # the child: swt with stderr on the terminal
        os.execv(SWT, [SWT, "unfold", str(tmp_path / "x.npy"), str(tmp_path / "w.npy"), "-k", "3"])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "swt unfold" in text and "24/24" in text and "━" in text


def test_blocks_stay_near_block_bytes_under_a_larger_budget_but_large_items_go_whole():
    from swt_cli.blocks import BLOCK_BYTES

    per_item = 3 << 20
    blocks = plan_blocks((1000,), (1000, 64, 64), 4, per_item, 4 << 30)
    extent = blocks.indexes[0][0].stop
    assert extent * per_item <= BLOCK_BYTES and len(blocks.indexes) > 1
    big = plan_blocks((4, 10), (4, 10, 64, 64), 4, BLOCK_BYTES // 4, 4 << 30)  # one item: 10 x BLOCK_BYTES / 4
    assert [i[0].stop - i[0].start for i in big.indexes] == [1, 1, 1, 1] and all(len(i) == 1 for i in big.indexes)


def test_a_transform_that_returns_its_input_block_still_writes_every_block(tmp_path):
    """The pipeline reads each block into one of two reused buffers: a result that is a view of its
    buffer must be copied before the buffer is read into again."""
    import time

    from swt_cli.blocks import Blocks
    from swt_cli.formats import create_writer, open_reader
    from swt_cli.pipeline import Progress, run

    class SlowWriter:  # the next reads land in the buffers while a block is still being written
        def __init__(self, inner):
            self.inner = inner

        def write(self, index, block):
            time.sleep(0.05)
            self.inner.write(index, block)

        def commit(self):
            self.inner.commit()

        def abort(self):
            self.inner.abort()

    x = np.random.default_rng().standard_normal((10, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    class Identity:
        lead = 1

        def bytes_per_item(self):
            return 2 * 3 * 4 * 4

        def __call__(self, block):
            return block

    with open_reader(str(tmp_path / "x.npy")) as reader:
        writer = SlowWriter(create_writer(str(tmp_path / "y.npy"), x.shape, x.dtype))
        blocks = Blocks([(slice(i, min(i + 3, 10)),) for i in range(0, 10, 3)], (3, 3, 4))
        run(reader, writer, Identity(), blocks, Progress("copy", 10, "items", quiet=True))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), x)


def _cgroup_files(root, proc_lines, limits):
    """A /proc/self/cgroup and a cgroup mount under ``root``: ``limits`` maps file paths to their text."""
    (root / "cgroup").write_text("\n".join(proc_lines) + "\n")
    for rel, text in limits.items():
        path = root / "fs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return str(root / "cgroup"), str(root / "fs")


@pytest.mark.parametrize("proc_lines, limits, want", [
    # cgroup v2: the smallest memory.max on the way up; "max" is none
    (["0::/job/step"], {"job/memory.max": "3000000", "job/step/memory.max": "max"}, 3000000),
    (["0::/job/step"], {"job/memory.max": "max", "job/step/memory.max": "max"}, None),
    # cgroup v1: the memory controller's hierarchy; the kernel's "no limit" is a huge number
    (["4:memory:/slurm/uid_1/job_7", "3:cpuset:/"], {"memory/slurm/uid_1/job_7/memory.limit_in_bytes": "2147483648",
                                                     "memory/slurm/memory.limit_in_bytes": "9223372036854771712"},
     2147483648),
    (["9:name=systemd:/", "4:cpu,memory:/a"], {"memory/a/memory.limit_in_bytes": "9223372036854771712"}, None),
    (["0::/"], {}, None),  # nothing readable
])
def test_cgroup_memory_limit_reads_v1_and_v2(tmp_path, proc_lines, limits, want):
    from swt_cli.pipeline import cgroup_memory_limit

    cgroup_file, root = _cgroup_files(tmp_path, proc_lines, limits)
    assert cgroup_memory_limit(cgroup_file, root) == want
    assert cgroup_memory_limit(str(tmp_path / "missing"), root) is None


def _child_cgroup(tmp_name, limit_bytes):
    """A real child of this process's memory cgroup (v1) with ``limit_bytes``, or a skip where none can be made."""
    from swt_cli.pipeline import cgroup_memory_limit  # noqa: F401 (the reader under test)

    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        pytest.skip("no /proc/self/cgroup")
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            parent = "/sys/fs/cgroup/memory" + path
            break
    else:
        pytest.skip("no cgroup v1 memory controller to make a child cgroup in")
    child = os.path.join(parent, tmp_name)
    try:
        os.mkdir(child)
        with open(os.path.join(child, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_bytes))
    except OSError as err:
        pytest.skip(f"cannot make a memory cgroup here ({err})")
    moved = subprocess.run(["sh", "-c", f"echo $$ > {child}/cgroup.procs"], capture_output=True, text=True)
    if moved.returncode:
        os.rmdir(child)
        pytest.skip(f"cannot move a process into a memory cgroup here ({moved.stderr.strip()})")
    return child


def test_a_block_over_the_jobs_cgroup_limit_is_refused_before_reading(tmp_path):
    """A real memory cgroup of 150 MB, as a batch scheduler would set: one item needing about 540 MB is
    refused with the cgroup named, not killed by the kernel halfway."""
    child = _child_cgroup(f"swt-test-{os.getpid()}", 150_000_000)
    try:
        windows = open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(1, 1, 2000, 2000, 3, 3))
        windows[0, 0, :4] = 1.0  # sparse: never read, since the check comes first
        del windows
        script = f'echo $$ > {child}/cgroup.procs && exec "$@"'
        proc = subprocess.run(["sh", "-c", script, "sh", SWT, "fold", str(tmp_path / "big.npy"), str(tmp_path / "out.npy"),
                               "-k", "3", "-s", "2", "-q"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert re.fullmatch(r"Error: one block needs about [\d,]+ bytes of memory, more than this job may use "
                            r"\(its cgroup's limit is 149,9\d\d,\d{3} bytes\): swt splits only the leading axes, so one "
                            r"image \(or one image's windows\) must fit in memory\n", proc.stderr), proc.stderr
        assert not (tmp_path / "out.npy").exists()
    finally:
        os.rmdir(child)


def test_the_default_budget_is_a_third_of_the_jobs_cgroup_limit(tmp_path):
    child = _child_cgroup(f"swt-test-budget-{os.getpid()}", 300_000_000)
    try:
        x = np.random.default_rng().standard_normal((40, 3, 31, 31, 3, 3)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        script = f'echo $$ > {child}/cgroup.procs && exec "$@"'
        code = ("from swt_cli.pipeline import default_budget, parse_size; "
                "print(default_budget(parse_size('512MiB')))")
        proc = subprocess.run(["sh", "-c", script, "sh", sys.executable, "-c", code], capture_output=True, text=True)
        limit = int(open(os.path.join(child, "memory.limit_in_bytes")).read())  # rounded down to whole pages
        assert 299_000_000 < limit <= 300_000_000 and int(proc.stdout) == limit // 3
        proc = subprocess.run(["sh", "-c", script, "sh", SWT, "fold", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"),
                               "-k", "3", "-s", "2", "-q"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), sliding_window_transpose(x, None, 3, stride=2),
                                   rtol=1e-5, atol=1e-5)  # this process may take the numba kernels: other rounding
    finally:
        os.rmdir(child)
