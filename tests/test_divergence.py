"""A diverged run never passes for success (Reliability issue, item 2).

  - a non-finite validation result is never the best checkpoint, and stops
    the run before the epoch is saved (the last finite checkpoint is kept);
  - re-running the same command fails again, with the same message, and
    writes no model.keras, SavedModel or metrics.json;
  - metrics.json and config.json are strict JSON (null, never NaN).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tfvae import ELBO
from tfvae.training import train
from zoo import vae as vae_entry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(dataset="digits", batch_size=64, latent_size=4, hidden_units=(16,),
             jit_compile=False, export=True, image_summaries=False, eval_num_samples=4,
             max_train_examples=256, max_eval_examples=128)


class HeldOutNaN(ELBO):
    """The ELBO, with NaN held-out terms (a model that trains without a skipped step
    but has diverged on held-out data)."""

    def __call__(self, model, batch, seed, training=False):
        out = super().__call__(model, batch, seed, training)
        return out if training else {k: v * math.nan for k, v in out.items()}


def _build_nan_model(config, info):
    return vae_entry.VAE(*vae_entry.build_parts(config, info), objective=HeldOutNaN(),
                         seed=config.seed)


def _written(workdir):
    return {name for name in ("model.keras", "export", "metrics.json")
            if os.path.exists(os.path.join(workdir, name))}


def _checkpoints(workdir, kind):
    folder = os.path.join(workdir, "checkpoints", kind)
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if f.endswith(".index"))


def test_non_finite_validation_is_never_best_and_fails_every_rerun(tmp_path):
    workdir = str(tmp_path / "run")
    config = vae_entry.Config(epochs=3, **SMALL)
    messages = []
    for _ in range(2):
        with pytest.raises(FloatingPointError, match="val_elbo = nan") as error:
            train.run(config, _build_nan_model, workdir)
        messages.append(str(error.value))
        assert _checkpoints(workdir, "best") == []          # NaN never counted as best
        assert _checkpoints(workdir, "last") == []          # the diverged epoch was not saved
        assert _written(workdir) == set()
    assert messages[0] == messages[1]                       # the same failure, every time


def test_a_diverged_cli_run_exits_non_zero_every_time_and_exports_nothing(tmp_path):
    workdir = str(tmp_path / "diverged")
    command = [sys.executable, "-m", "zoo.vae", f"--workdir={workdir}", "--dataset=digits",
               "--epochs=3", "--learning_rate=1e4", "--hidden_units=32", "--latent_size=4",
               "--image_summaries=false", "--eval_num_samples=4", "--jit_compile=false"]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    errors = []
    for _ in range(3):
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode != 0
        last = [line for line in run.stderr.splitlines() if "FloatingPointError" in line]
        assert last and "diverged" in last[-1], run.stderr[-2000:]
        errors.append(last[-1])
        assert _written(workdir) == set()
        assert _checkpoints(workdir, "last") == []
    assert len(set(errors)) == 1
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["entry"] == "zoo.vae"      # also when run as `python -m zoo.vae`


def _strict_load(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not strict JSON")
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=refuse)


def test_json_files_are_strict(tmp_path):
    path = str(tmp_path / "m.json")
    train.write_json_atomic(path, {"a": math.nan, "b": [1.0, -math.inf], "c": {"d": math.inf},
                                   "e": 2.5, "f": np.float64(3.0)})
    assert _strict_load(path) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2.5,
                                  "f": 3.0}


def test_a_finite_run_still_writes_strict_metrics(tmp_path):
    workdir = str(tmp_path / "ok")
    config = vae_entry.Config(epochs=1, **{**SMALL, "export": False})
    metrics = train.run(config, vae_entry.build_model, workdir)
    assert np.isfinite(metrics["test_log_likelihood"])
    assert _strict_load(os.path.join(workdir, "metrics.json"))["epochs_done"] == 1
    assert _checkpoints(workdir, "best") and _checkpoints(workdir, "last")
