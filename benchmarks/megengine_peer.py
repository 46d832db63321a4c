"""Time MegEngine's own fold or unfold on one input, for bench_kernels.py (run with MegEngine's Python).

MegEngine 1.13 ships wheels only for CPython 3.6-3.10 and numpy < 2, so it cannot share a process with
swt's benchmark; bench_kernels.py writes the input to a .npy file and runs this script with the Python
given as ``--megengine``::

    python3.10 -m venv mge && mge/bin/pip install MegEngine==1.13.0 "numpy<2" "opencv-python<4.11"
    .venv/bin/python benchmarks/bench_kernels.py --megengine mge/bin/python

    mge/bin/python benchmarks/megengine_peer.py fold IN.npy OUT.npy '{"k": 3, "s": 2, "p": 1, "d": 1, "o": 256}' 9

It writes MegEngine's result to OUT.npy (for the error column) and prints the median seconds of
``repeat`` calls after 2 warm-ups. Each call ends with ``megengine._full_sync()``, so the time is the
kernel's, not a copy back to NumPy.
"""

import json
import statistics
import sys
import time

import numpy as np


def main(op, src, dst, params, repeat, device="xpux"):
    import megengine
    import megengine.functional as F

    megengine.set_default_device(device)
    p = json.loads(params)
    x = megengine.tensor(np.load(src))
    if op == "fold":
        def call():
            return F.sliding_window_transpose(x, (p["o"], p["o"]), p["k"], p["p"], p["s"], p["d"])
    else:
        def call():
            return F.sliding_window(x, p["k"], p["p"], p["s"], p["d"])
    np.save(dst, call().numpy())
    times = []
    for i in range(2 + int(repeat)):
        t0 = time.perf_counter()
        call()
        megengine._full_sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": statistics.median(times), "version": megengine.__version__,
                      "device": megengine.get_default_device()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
