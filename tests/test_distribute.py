"""MirroredStrategy over 2 logical CPUs: the same update and gradient norm as one
device, and a NaN on one replica skips the step on all (run in a subprocess, since logical
devices must be set before TensorFlow starts)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mirrored_update_equals_single_device_and_skips_together():
    result = subprocess.run([sys.executable, "-m", "tests.distribute_check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == [1, 2]
    assert out["max_update"] > 1e-3                      # the step did something
    # Per-replica losses are scaled by 1/replicas: the summed update matches.
    assert out["max_abs_diff"] < 1e-6 * max(1.0, out["max_update"]) * 10, out
    assert out["skipped_steps"] == 1.0 and out["max_update_when_skipped"] == 0.0, out
    # The logged (and `max_grad_norm`'s) norm is that of the summed gradient: the one-device
    # norm (the replica's own norm, of half the batch's loss / 2, was about half of it).
    single, multi = out["grad_norm"]
    assert single > 0 and abs(multi - single) <= 1e-5 * single, out
