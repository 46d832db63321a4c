"""A transform that fails the first time it sees each block, for the Dask retry test.

Workers unpickle it by reference, so the test starts them with this folder on PYTHONPATH.
"""

import hashlib
import os
from dataclasses import dataclass


@dataclass
class FailOnce:
    inner: object  # a swt_cli.pipeline.Transform
    folder: str  # where the first attempt of each block leaves its mark

    def __call__(self, block):
        mark = os.path.join(self.folder, hashlib.sha1(block.tobytes()).hexdigest())
        if not os.path.exists(mark):
            open(mark, "w").close()
            raise RuntimeError("injected failure on the first attempt")
        return self.inner(block)
