"""One registry: `zoo.ENTRIES` is what `python -m zoo --list`, the README's entry table and
BUILD's py_binary targets list, in the same order."""

import os
import re
import subprocess
import sys

import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_entry_module_exists_and_nothing_else_is_an_entry():
    modules = {name[:-3] for name in os.listdir(os.path.join(ROOT, "zoo"))
               if name.endswith(".py") and not name.startswith("_")}
    helpers = {"common", "workdirs", "m1_features"}
    assert modules - helpers == set(zoo.ENTRIES) | set(zoo.TOOLS)
    for name in zoo.ENTRIES:
        entry = zoo.load(name)
        assert hasattr(entry, "Config") and hasattr(entry, "build_model"), name


def test_readme_entry_table_follows_the_registry():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = readme[readme.index("| Entry | Model |"):]
    table = table[:table.index("\n\n")]
    assert re.findall(r"^\| `(\w+)` \|", table, flags=re.M) == list(zoo.ENTRIES)


def test_build_has_a_binary_per_entry_and_tool():
    with open(os.path.join(ROOT, "BUILD"), encoding="utf-8") as f:
        build = f.read()
    block = build[build.index("ZOO_ENTRIES = ["):]
    block = block[:block.index("]")]
    assert re.findall(r'"(\w+)"', block) == list(zoo.ENTRIES) + list(zoo.TOOLS)


def test_zoo_list_prints_the_registry():
    out = subprocess.run([sys.executable, "-m", "zoo", "--list"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == list(zoo.ENTRIES)
