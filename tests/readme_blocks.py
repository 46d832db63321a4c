"""The ```python blocks of a README section, to run as a reader would."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(title: str) -> list[str]:
    """The code of each ```python block under the heading ``title`` (up to the next heading)."""
    section = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ )", README.read_text(), re.S | re.M)
    assert section, f"README.md has no section '{title}'"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert blocks, f"README.md's '{title}' has no python example"
    return blocks
