"""Object-storage benchmark: `swt fold s3:// -> s3://` beside a plain s3fs copy of the same bytes.

A moto S3 server runs as a process of its own on 127.0.0.1 (a free port). The input is a Zarr store of
float32 windows (N, 3, 63, 63, 3, 3), stride 2, in swt's chunks (zstd: random data barely compresses);
N=512 makes it about 220 MB. Each round times, as whole commands in turn:

- swt: ``swt fold s3://bench/w.zarr s3://bench/out-R.zarr -k 3 -s 2 -o 127`` (reads every chunk of the
  input, writes the 4x smaller images, its markers and attributes);
- copy: a Python process that downloads every object of the input store with s3fs (``get``) into a
  temporary folder and uploads them under a new prefix (``put``): the bytes of the input moved twice.

Throughput is input bytes over wall time; the report gives medians of --repeat rounds and their ratio.
Both talk to the same server, which is itself Python on the same cores: the figures describe this
loopback set-up, not a real object store.

    python benchmarks/bench_s3.py                 # N=512, 3 rounds
    python benchmarks/bench_s3.py --n 128 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

import numpy as np

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}

COPY = """
import os, sys, tempfile, s3fs
fs = s3fs.S3FileSystem(endpoint_url=sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    fs.get(sys.argv[2], os.path.join(tmp, "w.zarr"), recursive=True)
    fs.put(os.path.join(tmp, "w.zarr"), sys.argv[3], recursive=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the moto server did not start")


def make_input(url: str, endpoint: str, n: int) -> int:
    """Random windows written to S3 in blocks; returns the bytes stored."""
    import s3fs
    import zarr

    from swt_cli.blocks import CHUNK_BYTES
    from swt_cli.formats.base import chunk_shape

    shape = (n, 3, 63, 63, 3, 3)
    store = zarr.storage.FsspecStore.from_url(url, storage_options={"endpoint_url": endpoint})
    array = zarr.create_array(store=store, shape=shape, dtype=np.float32, chunks=chunk_shape(shape, 4, CHUNK_BYTES),
                              compressors=(zarr.codecs.ZstdCodec(level=1),), attributes={})
    rng = np.random.default_rng(0)
    step = array.chunks[0]
    for start in range(0, n, step):
        stop = min(start + step, n)
        array[start:stop] = rng.standard_normal((stop - start,) + shape[1:], dtype=np.float32)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    return sum(fs.du(url[5:], total=False).values())


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, **CREDENTIALS}
    os.environ.update(CREDENTIALS)
    server, endpoint = start_server(env)
    env["FSSPEC_S3_ENDPOINT_URL"] = endpoint
    try:
        import s3fs

        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bench")
        raw = args.n * 3 * 63 * 63 * 9 * 4
        stored = make_input("s3://bench/w.zarr", endpoint, args.n)
        swt_times, copy_times = [], []
        for r in range(args.repeat):
            swt_times.append(timed([sys.executable, "-m", "swt_cli", "fold", "s3://bench/w.zarr", f"s3://bench/out-{r}.zarr",
                                    "-k", "3", "-s", "2", "-o", "127", "-q"], env))
            copy_times.append(timed([sys.executable, "-c", COPY, endpoint, "bench/w.zarr", f"bench/copy-{r}.zarr"], env))
            print(f"round {r}: swt {swt_times[-1]:.2f} s, copy {copy_times[-1]:.2f} s", file=sys.stderr)
        s, c = statistics.median(swt_times), statistics.median(copy_times)
        print(f"input: {raw / 1e6:.0f} MB of windows ({stored / 1e6:.0f} MB stored), N={args.n}, medians of {args.repeat}")
        print(f"{'':28}{'seconds':>9}{'MB/s':>9}")
        print(f"{'swt fold s3 -> s3':28}{s:9.2f}{stored / 1e6 / s:9.1f}")
        print(f"{'s3fs copy (get + put)':28}{c:9.2f}{stored / 1e6 / c:9.1f}")
        print(f"swt / copy throughput: {c / s:.2f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
