"""docs/extending.md's worked examples run as written (every python block, in order)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_extending_examples_run():
    with open(os.path.join(ROOT, "docs", "extending.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) == 5
    namespace = {"__name__": "extending_examples"}
    for block in blocks:
        exec(compile(block, "docs/extending.md", "exec"), namespace)  # noqa: S102
