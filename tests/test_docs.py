"""docs/convolution.md runs: every ```python block, in order, in one namespace.

The guide asserts its own claims (shapes, parameter counts, equalities), so a change in the
library that makes the guide wrong fails here.
"""
import os
import re

GUIDE = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "convolution.md")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path):
    """(first line number, code) of each ```python block."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_guide_has_code():
    blocks = python_blocks(GUIDE)
    assert len(blocks) >= 8
    assert sum("assert" in code for _, code in blocks) >= 6


def test_guide_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything the guide writes lands here
    namespace = {"__name__": "convolution_guide"}
    for line, code in python_blocks(GUIDE):
        try:
            exec(compile(code, f"docs/convolution.md:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"the ```python block at docs/convolution.md line {line} failed: "
                                 f"{type(e).__name__}: {e}") from e
