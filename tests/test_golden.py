"""Every zoo entry reproduces its golden numbers (`tests/golden.py`) to float rounding."""

import json

import pytest

import zoo
from tests import golden
from tests.conftest import needs_fashion_mnist

with open(golden.GOLDEN_PATH) as _f:
    GOLDEN = json.load(_f)

# Float rounding only: the same machine and TF build give identical numbers; another
# CPU's kernels (AVX2 vs AVX-512 matmuls) move the last digits of one epoch's numbers.
RTOL, ATOL = 1e-4, 1e-3


def test_every_entry_has_golden_numbers():
    assert sorted(GOLDEN) == sorted(zoo.ENTRIES)


@pytest.mark.parametrize("name", zoo.ENTRIES)
def test_entry_reproduces_its_golden_numbers(name, tmp_path):
    needs_fashion_mnist()
    got = golden.measure(name, str(tmp_path))
    for field in golden.FIELDS:
        assert got[field] == pytest.approx(GOLDEN[name][field], rel=RTOL, abs=ATOL), field
