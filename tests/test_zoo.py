"""Every zoo entry end to end on a tiny real subset (Fashion-MNIST).

`FULL_ENTRIES` (one per distinct model class, export or training step) run the
whole path with XLA: build from the entry's config, train two epochs, check
the loss went down, the workdir's contents (config, checkpoints, TensorBoard
scalars and images, SavedModel, metrics), that every endpoint of the exported
SavedModel, reloaded in a process that imports only TensorFlow, equals the
.keras model's, and that `zoo.evaluate` on the SavedModel agrees with the
run's metrics. Every other entry (the same model classes with another
posterior family, objective, prior or inference) trains through `train.run`
without XLA, must improve its test ELBO and reload from model.keras with equal
outputs, and its training step must compile with XLA. Also: the
kill-and-resume path and the command-line errors.
"""

import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import needs_fashion_mnist
from tfvae.data import datasets as data_lib
from tfvae.evaluation import estimators as evaluation
from tfvae.training import train
from zoo import evaluate as evaluate_lib
from tfvae.models import VAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small settings; each entry takes the ones its Config has.
TINY = dict(dataset="fashion_mnist", epochs=2, batch_size=64, max_train_examples=768,
            max_eval_examples=128, eval_num_samples=10, latent_size=8,
            hidden_units=(64, 64), jit_compile=True, flow_hidden_units=(32, 32),
            flow_context_size=16, prior_hidden_units=(32, 32), num_flows=2)


# Per-entry settings on top of TINY (an entry's own data or sizes).
TINY_OVERRIDES = {
    "hvae": dict(latent_sizes=(8, 4), hidden_units=(64, 32)),
    # Two layers keep the compiled graph small; the five-layer stack is the entry's default.
    "ladder_vae": dict(latent_sizes=(8, 4), hidden_units=(64, 32), kl_warmup_steps=10),
    "resnet_vae": dict(dataset="image_patches", batch_size=32, max_train_examples=512,
                       num_layers=2, layers_per_resolution=(1, 1), hidden_channels=8,
                       latent_channels=4, iaf_hidden_units=(16,), context_channels=8,
                       num_components=2, ema_decay=0.5),
    "m2": dict(num_labels=100),
    "iwae": dict(k=2),
    "miwae": dict(k=2, m=2),
    "vamp_vae": dict(num_pseudo_inputs=50),
    "pixel_vae": dict(pixelcnn_filters=8, pixelcnn_layers=2, context_channels=4,
                      decoder_filters=(8, 8), first_kernel_size=5),
}


# One entry per model class / exported graph / training step: these run the full path.
FULL_ENTRIES = ("vae", "vae_iaf", "maf", "hvae", "resnet_vae", "cvae", "m2", "pixel_vae")
LIGHT_ENTRIES = tuple(name for name in zoo.ENTRIES if name not in FULL_ENTRIES)


def _tiny_config(entry):
    fields = {f.name for f in dataclasses.fields(entry.Config)}
    name = entry.__name__.rsplit(".", 1)[-1]
    settings = {**TINY, **TINY_OVERRIDES.get(name, {})}
    return entry.Config(**{k: v for k, v in settings.items() if k in fields})


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _tags(pattern):
    tags = {}
    for path in glob.glob(pattern):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.fixture(scope="module", params=FULL_ENTRIES)
def trained(request, tmp_path_factory):
    needs_fashion_mnist()
    entry = zoo.load(request.param)
    config = _tiny_config(entry)
    workdir = str(tmp_path_factory.mktemp(request.param))
    keras.utils.set_random_seed(0)
    untrained = entry.build_model(config, data_lib.info(config.dataset))
    test_ds = config.datasets()[2]
    untrained(next(iter(test_ds))["image"])
    before = evaluation.evaluate(untrained, test_ds)
    metrics = train.run(config, entry.build_model, workdir)
    return request.param, config, workdir, metrics, before


def test_training_lowers_the_loss_and_fills_the_workdir(trained):
    name, config, workdir, metrics, before = trained
    assert metrics["jit_compile"] is True          # XLA stays on: a lost jit fails here.
    assert metrics["epochs_done"] == config.epochs
    assert metrics["test_elbo"] > before["elbo"] + 50, (metrics, before)
    assert metrics["test_n"] == config.max_eval_examples
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"] - 3 * metrics["test_elbo_stderr"]
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f) == metrics
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f) == config.to_json()
    assert os.path.exists(os.path.join(workdir, "checkpoints", "last", "checkpoint"))
    assert os.path.exists(os.path.join(workdir, "saved_model", "saved_model.pb"))
    is_vae = isinstance(keras.saving.load_model(os.path.join(workdir, "model.keras")), VAE)
    scalars = _tags(os.path.join(workdir, "tensorboard", "train", "events*"))
    expected = ["epoch_loss", "epoch_elbo", "epoch_learning_rate", "epoch_skipped_steps"]
    for tag in expected + (["epoch_rate", "epoch_distortion"] if is_vae else []):
        assert tag in scalars, sorted(scalars)
    losses = [float(tf.make_ndarray(v.tensor)) for path in
              glob.glob(os.path.join(workdir, "tensorboard", "train", "events*"))
              for r in tf.data.TFRecordDataset(path)
              for v in tf.compat.v1.Event.FromString(r.numpy()).summary.value
              if v.tag == "epoch_loss"]
    assert losses[-1] < losses[0], losses
    images = _tags(os.path.join(workdir, "tensorboard", "images", "events*"))
    tags = ["prior_samples"] + (["reconstructions", "posterior_mean"] if is_vae else [])
    for tag in tags:
        assert images.get(tag) == [1, 2], sorted(images)


# A process that imports TensorFlow only (no TFP, no tfvae) and answers requests
# on stdin, one JSON line each: load a SavedModel, call the named endpoints on
# the saved inputs, answer with the outputs. One process serves every entry
# (starting TensorFlow once, not once per entry).
_TF_ONLY_WORKER = """
import json, sys, traceback
import numpy as np, tensorflow as tf
for line in sys.stdin:
    request = json.loads(line)
    try:
        m = tf.saved_model.load(request["saved_model"])
        inputs = np.load(request["inputs"])
        out = dict(signatures=sorted(m.signatures), results={})
        for name in request["endpoints"]:
            args = [inputs[f"{name}__{i}"]
                    for i in range(sum(k.startswith(name + "__") for k in inputs))]
            result = getattr(m, name)(*[tf.constant(a) for a in args])
            out["results"][name] = {k: v.numpy().tolist() for k, v in result.items()}
    except Exception:
        out = dict(error=traceback.format_exc())
    out["tfp"] = any(k.startswith("tensorflow_probability") for k in sys.modules)
    out["tfvae"] = any(k.startswith("tfvae") for k in sys.modules)
    sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def tf_only(tmp_path_factory):
    """Calls a SavedModel's endpoints in the TensorFlow-only worker process."""
    log = open(tmp_path_factory.mktemp("tf_only") / "stderr.txt", "w+")
    worker = subprocess.Popen([sys.executable, "-c", _TF_ONLY_WORKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True, env=_env(), cwd="/")

    def call(saved_model, inputs_path, endpoints):
        worker.stdin.write(json.dumps(dict(saved_model=saved_model, inputs=inputs_path,
                                           endpoints=endpoints)) + "\n")
        worker.stdin.flush()
        for line in worker.stdout:
            if line.startswith("RESULT "):
                out = json.loads(line[len("RESULT "):])
                break
        else:
            log.seek(0)
            raise AssertionError(f"The TensorFlow-only worker died:\n{log.read()[-3000:]}")
        assert "error" not in out, out["error"]
        assert not out["tfp"] and not out["tfvae"]
        return out

    yield call
    worker.stdin.close()
    worker.wait(timeout=60)
    log.close()


def _endpoint_inputs(specs, batch, seed_rng):
    """Inputs for one serving endpoint, chosen by the TensorSpec names.

    x: five test images; labels: their labels; z: five standard-normal rows;
    num_samples: 3; seed: [3, 4]; temperature: 0.7.
    """
    values = []
    for spec in specs:
        if spec.name == "x":
            value = batch["image"][:5]
        elif spec.name == "labels":
            value = batch["label"][:5]
        elif spec.name == "z":
            value = seed_rng.normal(size=(5, spec.shape[-1]))
        elif spec.name == "num_samples":
            value = 3
        elif spec.name == "seed":
            value = [3, 4]
        elif spec.name == "temperature":
            value = 0.7
        else:
            raise AssertionError(f"No test input for the endpoint argument {spec.name!r}; "
                                 "name it x, labels, z, num_samples, seed or temperature.")
        values.append(np.asarray(value, dtype=spec.dtype.as_numpy_dtype))
    return values


def test_export_reloads_with_tensorflow_alone(trained, tmp_path, tf_only):
    """Every serving endpoint of the SavedModel, in a TF-only process, equals the .keras model."""
    name, config, workdir, _, _ = trained
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    batch = {k: v.numpy() for k, v in next(iter(config.datasets()[2])).items()}
    rng = np.random.default_rng(0)
    endpoints = {n: (fn, _endpoint_inputs(specs, batch, rng))
                 for n, fn, specs in model.serving_endpoints()}
    assert {"sample", "elbo", "log_prob"} <= set(endpoints), sorted(endpoints)
    inputs_path = str(tmp_path / "inputs.npz")
    np.savez(inputs_path, **{f"{n}__{i}": v for n, (_, args) in endpoints.items()
                             for i, v in enumerate(args)})
    out = tf_only(os.path.join(workdir, "saved_model"), inputs_path, sorted(endpoints))
    assert set(endpoints) <= set(out["signatures"])
    image_shape = list(data_lib.info(config.dataset).image_shape)
    for endpoint, (fn, args) in endpoints.items():
        expected = tf.function(fn)(*[tf.constant(a) for a in args])
        assert set(expected) == set(out["results"][endpoint]), endpoint
        for key, value in expected.items():
            np.testing.assert_allclose(out["results"][endpoint][key], np.asarray(value),
                                       rtol=1e-4, atol=1e-5, err_msg=f"{endpoint}/{key}")
        if endpoint == "sample":
            assert [list(np.shape(v))[1:] for v in expected.values()] == [image_shape]
        if endpoint in ("elbo", "log_prob"):
            assert all(np.all(np.isfinite(v)) for v in expected.values())


def test_evaluation_of_the_workdir(trained):
    """`zoo.evaluate --saved_model` on the workdir agrees with the run's own test metrics.

    (The .keras path of `evaluate_workdir` is the one the run itself used for
    metrics.json, and test_evaluate_command_prints_one_json_line runs it from
    the command line; the SavedModel's `elbo`/`log_prob` equal the .keras
    model's on the same inputs, test_export_reloads_with_tensorflow_alone.)
    """
    name, config, workdir, metrics, _ = trained
    result = evaluate_lib.evaluate_workdir(workdir, num_samples=10, max_examples=128,
                                           batch_size=64, use_saved_model=True)
    assert set(result) >= {"dataset", "split", "n", "elbo", "elbo_stderr", "log_likelihood",
                           "log_likelihood_stderr", "num_importance_samples",
                           "bits_per_dim", "bits_per_dim_stderr"}
    assert result["n"] == 128 and result["num_importance_samples"] == 10
    assert result["elbo"] == pytest.approx(metrics["test_elbo"],
                                           abs=5 * metrics["test_elbo_stderr"] + 1e-3)
    assert result["log_likelihood"] == pytest.approx(
        metrics["test_log_likelihood"], abs=5 * metrics["test_log_likelihood_stderr"] + 1e-3)


@pytest.mark.parametrize("name", LIGHT_ENTRIES)
def test_entry_trains_reloads_and_compiles_with_xla(name, tmp_path):
    """The other entries: train (no XLA), better test ELBO, .keras round trip, XLA train step."""
    needs_fashion_mnist()
    entry = zoo.load(name)
    config = dataclasses.replace(_tiny_config(entry), jit_compile=False, export=False,
                                 image_summaries=False)
    info = data_lib.info(config.dataset)
    _, _, test_ds = config.datasets()
    batch = next(iter(test_ds))
    keras.utils.set_random_seed(0)
    untrained = entry.build_model(config, info)
    untrained(batch["image"][:1])
    before = evaluation.evaluate(untrained, test_ds)
    workdir = str(tmp_path / "run")
    metrics = train.run(config, entry.build_model, workdir)
    assert metrics["epochs_done"] == config.epochs
    assert metrics["test_elbo"] > before["elbo"] + 50, (metrics, before)
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"] - 3 * metrics["test_elbo_stderr"]
    assert os.path.exists(os.path.join(workdir, "checkpoints", "last", "checkpoint"))
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f) == config.to_json()
    # model.keras gives the numbers metrics.json was computed from (same seeds, same data).
    model = keras.saving.load_model(os.path.join(workdir, "model.keras"))
    reloaded = evaluation.evaluate(model, test_ds, num_samples=config.eval_num_samples)
    assert reloaded["elbo"] == pytest.approx(metrics["test_elbo"], rel=1e-5)
    assert reloaded["log_likelihood"] == pytest.approx(metrics["test_log_likelihood"], rel=1e-5)
    # The entry's own setting is XLA; its training objective (the ELBO for a flow) compiles
    # with XLA and agrees with the graph's value up to Monte-Carlo noise (XLA draws other
    # random numbers from the same stateless seed). Full XLA training steps of every model
    # class run in test_training_lowers_the_loss_and_fills_the_workdir.
    assert entry.Config().jit_compile is True
    seed = tf.constant([5, 6])
    if hasattr(model, "objective"):
        def objective(x):
            return model.objective(x, seed)["loss"]
    else:
        def objective(x):
            return model.elbo(x, seed=seed)
    x = batch["image"][:16]
    compiled = tf.function(objective, jit_compile=True)(x)
    assert np.all(np.isfinite(compiled))
    np.testing.assert_allclose(compiled, tf.function(objective)(x), rtol=0.05)


def test_evaluate_command_prints_one_json_line(tmp_path):
    needs_fashion_mnist()
    workdir = str(tmp_path / "run")
    entry = zoo.load("vae")
    config = dataclasses.replace(_tiny_config(entry), epochs=1, export=False, hidden_units=(32, 32))
    train.run(config, entry.build_model, workdir)
    cmd = [sys.executable, "-m", "zoo.evaluate", f"--workdir={workdir}", "--num_samples=10",
           "--max_examples=128", "--batch_size=64"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["n"] == 128 and result["dataset"] == "fashion_mnist"
    assert result["log_likelihood"] >= result["elbo"] - 3 * result["elbo_stderr"]


def _cli(workdir, *flags):
    return [sys.executable, "-m", "zoo.vae", f"--workdir={workdir}", "--dataset=fashion_mnist",
            "--max_train_examples=256", "--max_eval_examples=64", "--batch_size=32",
            "--latent_size=4", "--hidden_units=32", "--image_summaries=false",
            "--export=false", *flags]


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    needs_fashion_mnist()
    workdir = str(tmp_path / "run")
    index = os.path.join(workdir, "checkpoints", "last", "ckpt-2.index")
    proc = subprocess.Popen(_cli(workdir, "--epochs=500"), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not os.path.exists(index) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(index), "the run never finished two epochs"
    done = tf.train.load_variable(os.path.join(workdir, "checkpoints", "last"),
                                  "epoch/.ATTRIBUTES/VARIABLE_VALUE")
    assert done >= 2 and not os.path.exists(os.path.join(workdir, "metrics.json"))
    result = subprocess.run(_cli(workdir, f"--epochs={done + 1}"), capture_output=True,
                            text=True, env=_env(), cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in result.stderr and f"{done} epoch(s) done" in result.stderr
    assert f"Epoch {done + 1}/{done + 1}" in result.stdout + result.stderr
    assert "Epoch 1/" not in result.stdout + result.stderr
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["epochs_done"] == done + 1


@pytest.mark.parametrize("flags, message", [
    (["--dataset=nope"], "`dataset` must be one of"),
    (["--binarize=sometimes"], "binarize"),
    (["--latent_sise=3"], "Unknown command line flag 'latent_sise'"),
    (["--data_dir=/does/not/exist"], "/does/not/exist"),
    (["--hidden_units=5,x"], "hidden_units"),
])
def test_command_line_errors_name_the_problem(tmp_path, flags, message):
    result = subprocess.run(_cli(str(tmp_path / "w"), "--epochs=1", *flags), capture_output=True,
                            text=True, env=_env(), cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_changed_config_refuses_to_resume(tmp_path):
    workdir = str(tmp_path)
    config = train.TrainConfig(dataset="digits")
    train.write_json_atomic(os.path.join(workdir, "config.json"), config.to_json())
    changed = train.TrainConfig(dataset="digits", seed=5, epochs=99).to_json()
    with pytest.raises(ValueError, match=r"seed: 0 -> 5"):
        train.check_resumable(changed, os.path.join(workdir, "config.json"))
    train.check_resumable(train.TrainConfig(dataset="digits", epochs=99).to_json(),
                          os.path.join(workdir, "config.json"))


def test_zoo_list_prints_the_entries():
    result = subprocess.run([sys.executable, "-m", "zoo", "--list"], capture_output=True,
                            text=True, env=_env(), cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list(zoo.ENTRIES)
