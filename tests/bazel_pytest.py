"""Runs one pytest file under Bazel's `py_test` (which runs a plain script)."""

import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]]))
