"""The library's public functions and classes document themselves (issue 13 point 8): ``help(obj)`` gives
numpydoc Parameters, Returns and Raises sections naming every argument, and a shape example (which runs as
a doctest under ``pytest --doctest-modules``)."""

from __future__ import annotations

import inspect
import re

import pytest

import swt_cli

PUBLIC = ("sliding_window_transpose", "sliding_window", "SlidingWindowTranspose", "SlidingWindow", "fold_file",
          "unfold_file", "plan", "Geometry", "RunOptions")


def _section(doc: str, title: str) -> str | None:
    """The text of numpydoc section ``title`` (up to the next section), or None."""
    match = re.search(rf"^{title}\n{'-' * len(title)}\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    return match[1] if match else None


def _documented_names(parameters: str) -> set[str]:
    names = set()
    for line in parameters.splitlines():
        if line and not line[0].isspace():
            names.update(n.strip() for n in line.split(" : ")[0].split(","))
    return names


@pytest.mark.parametrize("name", PUBLIC)
def test_every_argument_is_documented_with_returns_raises_and_an_example(name):
    obj = getattr(swt_cli, name)
    doc = inspect.getdoc(obj)
    parameters = _section(doc, "Parameters")
    assert parameters is not None, f"{name}: no Parameters section"
    signature = inspect.signature(obj)
    wanted = {p.name for p in signature.parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    missing = wanted - _documented_names(parameters)
    assert not missing, f"{name}: {sorted(missing)} not in its Parameters"
    assert _section(doc, "Raises") is not None and "SwtError" in _section(doc, "Raises"), name
    if not inspect.isclass(obj):
        assert _section(doc, "Returns") is not None, f"{name}: no Returns section"
    examples = [line for line in doc.splitlines() if line.lstrip().startswith(">>> ")]
    shown = doc[doc.index(">>> "):]
    assert examples and re.search(r"\n\s*\(\(?\d+, \d+", shown), f"{name}: no example showing a shape"


def test_the_module_classes_document_their_repr():
    assert "SlidingWindowTranspose(output_size=(64, 48), kernel_size=3" in inspect.getdoc(swt_cli.SlidingWindowTranspose)
    assert "SlidingWindow(kernel_size=3, padding=0, stride=2, dilation=1)" in inspect.getdoc(swt_cli.SlidingWindow)
