"""The MegEngine 1.13.0 reference cases shipped in tests/data."""

import json
import pathlib

import numpy as np

GOLDEN = pathlib.Path(__file__).parent / "data" / "megengine_cases.npz"


def golden_cases():
    """(name, params, x, y) for each MegEngine 1.13.0 case."""
    with np.load(GOLDEN) as z:
        names = sorted({k.split("/")[0] for k in z.files if k.startswith("case")})
        return [(n, json.loads(str(z[n + "/params"])), z[n + "/x"], z[n + "/y"]) for n in names]


def tolerance(dtype):
    return 1e-2 if np.dtype(dtype) == np.float16 else 1e-5
