"""Small leftovers of issue 13: the library's file functions take ``pathlib.Path`` (any ``os.PathLike``) as well
as str, and ``swt plan`` of a file of ``swt unfold --cover`` says in text what its JSON says: the size the fold
crops back to, beside the padded size it folds onto."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
from clitools import invoke

import swt_cli
from swt_cli import fold_file, info, plan, unfold_file


class Spot(os.PathLike):
    """A path that is neither str nor pathlib: only ``__fspath__``."""

    def __init__(self, path):
        self.path = str(path)

    def __fspath__(self) -> str:
        return self.path


def test_file_functions_take_path_like_arguments(tmp_path):
    rng = np.random.default_rng()
    x = (rng.standard_normal((2, 3, 20, 17)) * 1e6).astype(np.float32)
    np.save(tmp_path / "img.npy", x)
    by_str = unfold_file(str(tmp_path / "img.npy"), str(tmp_path / "a.h5"), kernel=4, stride=3, cover=True, quiet=True)
    by_path = unfold_file(tmp_path / "img.npy", tmp_path / "b.h5", kernel=4, stride=3, cover=True, quiet=True)
    assert by_path.output == str(tmp_path / "b.h5") and by_path.shape == by_str.shape
    a, b = info(str(tmp_path / "a.h5")), info(pathlib.Path(f"{tmp_path / 'b.h5'}:/data"))
    assert {k: v for k, v in b.items() if k not in ("path", "attrs")} == {k: v for k, v in a.items() if k not in ("path", "attrs")}
    assert plan(Spot(tmp_path / "b.h5")).to_dict() == plan(str(tmp_path / "a.h5")).to_dict() | {"input": str(tmp_path / "b.h5")}
    back = fold_file(Spot(tmp_path / "b.h5"), tmp_path / "back.npy", reduce="mean", quiet=True)
    assert back.output == str(tmp_path / "back.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "back.npy"), x)  # --cover and mean: every element back exactly
    assert swt_cli.plan(None, output_size=8, kernel=3).output_size == (8, 8)


def test_plan_text_of_a_covering_unfold_names_the_cropped_size_as_the_json_does(tmp_path):
    np.save(tmp_path / "img.npy", np.zeros((1, 2, 50, 45), np.float32))
    assert invoke("unfold", tmp_path / "img.npy", tmp_path / "t.h5", "-k", "8", "-s", "8", "--cover", "-q").exit_code == 0
    facts = json.loads(invoke("plan", tmp_path / "t.h5", "--json").stdout)
    assert facts["output_size"] == [56, 48] and facts["cropped_to"] == [50, 45] and facts["output_shape"] == [1, 2, 50, 45]
    text = dict(line.split(": ", 1) for line in invoke("plan", tmp_path / "t.h5").stdout.splitlines())
    assert text["output size"].strip() == "50x45 (folded at 56x48, the size swt unfold --cover padded to, then cropped)"
    assert text["output"].strip().startswith("(1, 2, 50, 45) float32")
    # Without the crop (the padded size asked for), the one size, in both.
    facts = json.loads(invoke("plan", tmp_path / "t.h5", "-o", "56,48", "--json").stdout)
    assert facts["output_size"] == [56, 48] and "cropped_to" not in facts
    text = dict(line.split(": ", 1) for line in invoke("plan", tmp_path / "t.h5", "-o", "56,48").stdout.splitlines())
    assert text["output size"].strip() == "56x48"
