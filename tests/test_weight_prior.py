"""MAP training (book A.2.1): `--weight_prior_scale` puts N(0, sigma^2 I) on every weight.

The gradient of the per-example loss gains theta / (sigma^2 N) exactly, the
logged `log_weight_prior` is log p(theta) / N with its constant, and the
option works from the CLI of any entry (it lives in the shared loop).
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfvae.data import datasets as data_lib
from zoo import vae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(weight_prior=None):
    keras.utils.set_random_seed(0)
    config = vae.Config(dataset="digits", latent_size=2, hidden_units=(8,))
    model = vae.build_model(config, data_lib.info("digits"))
    if weight_prior:
        model.set_weight_prior(*weight_prior)
    model.build((None, 8, 8, 1))
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    return model


def test_one_step_adds_the_prior_gradient_exactly():
    x = (np.random.default_rng(0).random((16, 8, 8, 1)) > 0.5).astype("float32")
    plain, with_prior = _model(), _model((0.5, 1000))
    before = [v.numpy() for v in with_prior.trainable_variables]
    plain.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    logs = with_prior.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False).history
    for b, p, w in zip(before, plain.trainable_variables, with_prior.trainable_variables):
        # SGD: w' = w - lr (g + w / (sigma^2 N)) = plain' - lr w / (0.25 * 1000)
        np.testing.assert_allclose(w.numpy(), p.numpy() - 0.1 * b / (0.25 * 1000), atol=2e-6)
    size = sum(b.size for b in before)
    expected = (-0.5 * sum((b ** 2).sum() for b in before) / 0.25
                - 0.5 * size * math.log(2 * math.pi * 0.25)) / 1000
    assert logs["log_weight_prior"][0] == pytest.approx(expected, rel=1e-5)
    assert logs["loss"][0] == pytest.approx(
        plain.history.history["loss"][0] - expected, rel=1e-5)


def test_the_prior_is_saved_with_the_model(tmp_path):
    model = _model((0.5, 1000))
    path = str(tmp_path / "m.keras")
    model.save(path)
    assert keras.saving.load_model(path).weight_prior == {"scale": 0.5, "num_examples": 1000}


@pytest.mark.parametrize("args, message", [
    ((0.0, 10), "`scale` must be > 0"), ((1.0, 0), "`num_examples` must be an integer >= 1"),
])
def test_bad_priors_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        _model().set_weight_prior(*args)


def test_from_the_cli_of_another_entry(tmp_path):
    workdir = str(tmp_path / "hvae")
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run(
        [sys.executable, "-m", "zoo.hvae", f"--workdir={workdir}", "--dataset=digits",
         "--latent_sizes=4,2", "--hidden_units=16,8", "--epochs=1", "--export=false",
         "--image_summaries=false", "--weight_prior_scale=0.1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "log_weight_prior:" in run.stdout + run.stderr
    with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["weight_prior_scale"] == 0.1
