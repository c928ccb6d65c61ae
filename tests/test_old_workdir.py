"""A workdir written by an earlier main (8f5a3f2, before `LatentVariableModel`) still works.

`tests/fixtures/workdir_vae_8f5a3f2` is a one-epoch `zoo.vae` run of that
commit (config.json, checkpoints, model.keras, metrics.json, TensorBoard
events), made with

    python -m zoo.vae --workdir=DIR --dataset=fashion_mnist --epochs=1 \
        --max_train_examples=128 --max_eval_examples=64 --batch_size=32 \
        --hidden_units=16 --latent_size=4 --export=false --image_summaries=false \
        --eval_num_samples=4 --jit_compile=false

Today's code must resume it from its checkpoint (the restored weights are
the saved ones) and evaluate its model.keras.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tests.conftest import needs_fashion_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "workdir_vae_8f5a3f2")
FLAGS = ["--dataset=fashion_mnist", "--max_train_examples=128", "--max_eval_examples=64",
         "--batch_size=32", "--hidden_units=16", "--latent_size=4", "--export=false",
         "--image_summaries=false", "--eval_num_samples=4", "--jit_compile=false"]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_old_workdir_resumes_from_its_checkpoint_and_evaluates(tmp_path):
    needs_fashion_mnist()
    workdir = str(tmp_path / "vae")
    shutil.copytree(FIXTURE, workdir)
    saved = dict(tf.train.list_variables(os.path.join(workdir, "checkpoints", "last", "ckpt-1")))
    kernel_key = next(k for k in saved if k.startswith("model_variables/")
                      and "encoder" in k and "kernel" in k)
    before = tf.train.load_variable(os.path.join(workdir, "checkpoints", "last", "ckpt-1"),
                                    kernel_key)
    run = _run("zoo.vae", f"--workdir={workdir}", "--epochs=2", *FLAGS)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Resumed from" in run.stderr and "1 epoch(s) done" in run.stderr
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["epochs_done"] == 2
    # The second epoch started from the saved weights: one more epoch's checkpoint, whose
    # kernel differs from the first's by at most a few Adam steps of lr 1e-3 (4 steps).
    after = tf.train.load_variable(os.path.join(workdir, "checkpoints", "last", "ckpt-2"),
                                   kernel_key)
    assert 0 < np.abs(after - before).max() < 4 * 1e-3 * 1.5
    evaluation = _run("zoo.evaluate", f"--workdir={workdir}", "--num_samples=4",
                      "--max_examples=64")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    result = json.loads(evaluation.stdout.strip().splitlines()[-1])
    assert result["n"] == 64 and np.isfinite(result["log_likelihood"])
    assert result["likelihood_kind"] == "discrete"
