"""Bad inputs give an error that names the argument, never a silent wrong answer (one table).

Each row of `ROWS` says how the input is given, the bad value, and a fragment of
the error message that names the argument:

  - `cli(module, *flags)`: `python -m module flags` in a subprocess (PYTHONPATH the
    repository, TF_CPP_MIN_LOG_LEVEL=2). It must exit non-zero with the fragment in
    its output, as a usage error (no traceback) unless `traceback=True`, and write
    nothing: `{new}` (a fresh workdir) does not exist afterwards, `{trained}` (the
    shared trained workdir) and `{planted}` have no new or changed files.
  - `api(fn)`: a Python call, eagerly: a ValueError.
  - `graph(fn, *args)`: `fn` under `tf.function` on tensor arguments: an
    InvalidArgumentError (the checks run in the graph, when the value is known).
  - `saved(signature, **inputs)`: the exported SavedModel, loaded with
    `tf.saved_model.load` in a process that imports only TensorFlow (no tfvae, no
    TFP): an InvalidArgumentError. All such calls run in one subprocess.
  - `endpoint(model, signature, **inputs)`: a serving endpoint of another model
    class (untrained, tiny: `TINY_MODELS`) as `export_saved_model` traces it
    (`serving_endpoints`, its input signature): an InvalidArgumentError.

Everything shares one tiny trained workdir (digits, 8x8 images; MLP 16, z of 4,
1 epoch; with its SavedModel). A row that fails because of code this file's
author could not change is marked `xfail(strict=True)` with the reason: it
turns into a failure once fixed, so the mark is removed with the fix.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfvae.data import datasets
from tfvae.training import export as export_lib
from tfvae.training import train
import zoo.hvae
import zoo.pixel_vae
import zoo.vae
from zoo import evaluate as evaluate_lib
from zoo import gradients as gradients_lib
from zoo import workdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 1)           # digits
LATENT = 4
TINY = ("--dataset=digits", "--hidden_units=16", "--latent_size=4", "--epochs=1",
        "--export=false", "--image_summaries=false", "--jit_compile=false")
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------- how a row calls
@dataclasses.dataclass(frozen=True)
class Cli:
    args: tuple
    traceback: bool = False     # the error may come with a traceback (not a usage error)


@dataclasses.dataclass(frozen=True)
class Api:
    fn: object


@dataclasses.dataclass(frozen=True)
class Graph:
    fn: object
    args: tuple


@dataclasses.dataclass(frozen=True)
class Saved:
    signature: str
    inputs: tuple               # ((name, value), ...)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    model: str
    signature: str
    inputs: tuple               # ((name, value), ...)


def endpoint(model, signature, **inputs):
    return Endpoint(model, signature, tuple(inputs.items()))


def cli(module, *flags, traceback=False):
    return Cli((module, *flags), traceback)


def api(fn):
    return Api(fn)


def graph(fn, *args):
    return Graph(fn, args)


def saved(signature, **inputs):
    return Saved(signature, tuple(inputs.items()))


def row(case, how, bad, message, xfail=None):
    """One table row (test id `case`): `how` it is called, the `bad` value, the `message`
    fragment; `xfail`: why it fails today (a strict mark: it must fail until fixed)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(how, bad, message, id=case, marks=marks)


# ------------------------------------------------------------------------- inputs
def images(n=2, scale=1.0, value=None):
    """n digit-sized images in [0, 1] (times `scale`), optionally one entry set to `value`."""
    x = np.random.default_rng(0).uniform(size=(n, *SHAPE)).astype(np.float32) * scale
    if value is not None:
        x.flat[0] = value
    return x


def latents(value=None, n=2):
    """n standard-normal z of the trained model, optionally one entry set to `value`."""
    z = np.random.default_rng(1).normal(size=(n, LATENT)).astype(np.float32)
    if value is not None:
        z[0, 1] = value
    return z


EMPTY_X = np.zeros((0, *SHAPE), np.float32)
LABELS = np.array([3, 7], np.int32)
SEED = np.array([0, 0], np.int32)


def _idx(magic, dims):
    return (magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims)
            + bytes(int(np.prod(dims))))


def idx_dir(tmp_path, replace):
    """A data_dir with Fashion-MNIST's four IDX files (12 train, 6 test images), one of
    them replaced by `replace(content)`: named as `datasets.load_arrays` looks for them."""
    directory = tmp_path / "idx"
    directory.mkdir()
    contents = [_idx(2051, (12, 28, 28)), _idx(2049, (12,)), _idx(2051, (6, 28, 28)),
                _idx(2049, (6,))]
    contents[0] = replace(contents[0])
    for stem, content in zip(IDX_STEMS, contents):
        (directory / stem).write_bytes(content)
    return str(directory)


def fashion(data_dir):
    return datasets.make_dataset("fashion_mnist", "train", 4, data_dir=data_dir, download=False)


ROWS = [
    # --------------------------------------------------- training command lines
    row("cli-mistyped-flag", cli("zoo.vae", "--workdir={new}", "--lattent_size=3"),
        "--lattent_size=3", "Unknown command line flag 'lattent_size'"),
    row("cli-latent-size-0", cli("zoo.vae", "--workdir={new}", *TINY, "--latent_size=0"),
        "--latent_size=0", "`latent_size` must be an integer >= 1. Received: latent_size=0"),
    row("cli-batch-size-0", cli("zoo.vae", "--workdir={new}", *TINY, "--batch_size=0"),
        "--batch_size=0", "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    row("cli-epochs-negative", cli("zoo.vae", "--workdir={new}", *TINY, "--epochs=-1"),
        "--epochs=-1", "`epochs` must be an integer >= 1. Received: epochs=-1"),
    row("cli-hidden-units-0", cli("zoo.vae", "--workdir={new}", *TINY, "--hidden_units=0"),
        "--hidden_units=0", "`hidden_units` must be positive integers"),
    row("cli-unknown-dataset", cli("zoo.vae", "--workdir={new}", *TINY, "--dataset=nope"),
        "--dataset=nope", "`dataset` must be one of"),
    row("cli-beta-negative", cli("zoo.vae", "--workdir={new}", *TINY, "--beta=-1"),
        "--beta=-1", "`beta` must be >= 0. Received: beta=-1.0"),
    row("cli-free-bits-groups", cli("zoo.vae", "--workdir={new}", *TINY[:2], *TINY[3:],
                                    "--free_bits_groups=3"),
        "--free_bits_groups=3 (latent_size 32)",
        "`free_bits_groups` must divide the latent size [32]. Received: free_bits_groups=3"),
    row("cli-iwae-unused-beta", cli("zoo.iwae", "--workdir={new}", *TINY, "--beta=2"),
        "zoo.iwae --beta=2", "`beta` not used by the IWAE bound"),
    row("cli-bad-strategy", cli("zoo.vae", "--workdir={new}", *TINY, "--strategy=bogus"),
        "--strategy=bogus", "`strategy` must be one of default, mirrored"),
    row("cli-weight-prior-negative",
        cli("zoo.vae", "--workdir={new}", *TINY, "--weight_prior_scale=-1"),
        "--weight_prior_scale=-1", "`weight_prior_scale` must be >= 0"),
    row("cli-multi-worker-no-tf-config",
        cli("zoo.vae", "--workdir={new}", *TINY, "--strategy=multi_worker"),
        "--strategy=multi_worker without TF_CONFIG", "TF_CONFIG is not set"),
    row("cli-bad-binarize", cli("zoo.vae", "--workdir={new}", *TINY, "--binarize=sometimes"),
        "--binarize=sometimes", "`binarize` must be one of dynamic, static, none"),
    row("cli-batch-larger-than-data", cli("zoo.vae", "--workdir={new}", *TINY,
                                          "--batch_size=5000"),
        "--batch_size=5000 (1297 digits)", "`batch_size` (5000) exceeds the 1297 training"),
    row("cli-empty-data-dir", cli("zoo.vae", "--workdir={new}", *TINY[1:],
                                  "--dataset=fashion_mnist", "--data_dir={empty}",
                                  "--download=false", "--max_train_examples=64",
                                  "--max_eval_examples=64", "--batch_size=32"),
        "--data_dir=<empty folder>", "not found in `data_dir` (--data_dir)"),
    # ------------------------------------------------- evaluation command lines
    row("cli-evaluate-chunk-size-0", cli("zoo.evaluate", "--workdir={trained}",
                                         "--chunk_size=0"),
        "--chunk_size=0", "`chunk_size` must be an integer >= 1. Received: chunk_size=0"),
    row("cli-evaluate-chunk-size-negative", cli("zoo.evaluate", "--workdir={trained}",
                                                "--chunk_size=-1"),
        "--chunk_size=-1", "`chunk_size` must be an integer >= 1. Received: chunk_size=-1"),
    row("cli-evaluate-num-samples-negative", cli("zoo.evaluate", "--workdir={trained}",
                                                 "--num_samples=-4"),
        "--num_samples=-4", "`num_samples` must be an integer >= 0. Received: num_samples=-4"),
    row("cli-evaluate-batch-size-0", cli("zoo.evaluate", "--workdir={trained}",
                                         "--batch_size=0"),
        "--batch_size=0", "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    row("cli-evaluate-max-examples-negative", cli("zoo.evaluate", "--workdir={trained}",
                                                  "--max_examples=-1"),
        "--max_examples=-1", "`max_examples` must be an integer >= 0. Received: max_examples=-1"),
    row("cli-evaluate-planted-lambda", cli("zoo.evaluate", "--workdir={planted}",
                                           "--num_samples=0", traceback=True),
        "model.keras with a Lambda layer", "holds Python code (a `Lambda` layer's function)"),
    row("cli-gradients-batch-size-0", cli("zoo.gradients", "--workdir={trained}",
                                          "--batch_size=0"),
        "--batch_size=0", "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    row("cli-gradients-num-draws-0", cli("zoo.gradients", "--workdir={trained}",
                                         "--num_draws=0"),
        "--num_draws=0", "`num_draws` must be an integer >= 2. Received: num_draws=0"),
    row("cli-gradients-baseline-samples-0", cli("zoo.gradients", "--workdir={trained}",
                                                "--baseline_samples=0"),
        "--baseline_samples=0",
        "`baseline_samples` must be an integer >= 1. Received: baseline_samples=0"),
    # ---------------------------------------------------------- data (Python API)
    row("data-unknown-name", api(lambda c: datasets.make_dataset("nope", "train", 4)),
        "name='nope'", "`name` must be one of mnist"),
    row("data-batch-size-0", api(lambda c: datasets.make_dataset("digits", "train", 0)),
        "batch_size=0", "`batch_size` must be an integer >= 1. Received: batch_size=0"),
    row("data-truncated-idx", api(lambda c: fashion(idx_dir(c.tmp_path, lambda b: b[:-100]))),
        "a truncated train-images IDX file",
        "train-images-idx3-ubyte: header gives shape (12, 28, 28) (9424 bytes) but the file "
        "holds 9324 bytes"),
    row("data-wrong-magic-idx", api(lambda c: fashion(idx_dir(c.tmp_path,
                                                              lambda b: b"\0\0\x08\x0c" + b[4:]))),
        "an IDX file with magic 2060", "train-images-idx3-ubyte: magic number 2060"),
    row("data-empty-data-dir", api(lambda c: fashion(c.empty)),
        "data_dir=<empty folder>", "not found in `data_dir` (--data_dir)"),
    # ------------------------------------------------ model (Python API, eagerly)
    row("model-image-size", api(lambda c: c.model.elbo(np.zeros((2, 5, 5, 1), np.float32))),
        "x [2, 5, 5, 1]",
        "Expected examples of shape [batch, 8, 8, 1]. Received: shape=[2, 5, 5, 1]"),
    row("model-strings-elbo", api(lambda c: c.model.elbo(np.full((2, *SHAPE), "a"))),
        "x of strings",
        "`x` must hold numbers (a float or integer tensor). Received: dtype=string"),
    row("model-strings-log-prob", api(lambda c: c.model.log_prob(tf.fill([2, *SHAPE], "a"),
                                                                 num_samples=2)),
        "x a string tensor", "`x` must hold numbers"),
    row("model-outside-support", api(lambda c: c.model.elbo(images(scale=255.0))),
        "x in 0..255 (Bernoulli)", "`x` must lie in [0.0, 1.0] for a Bernoulli likelihood"),
    row("model-negative-values", api(lambda c: c.model.log_prob(images(value=-0.5), num_samples=2)),
        "x with -0.5 (Bernoulli)", "`x` must lie in [0.0, 1.0]"),
    row("model-nan-elbo", api(lambda c: c.model.elbo(images(value=np.nan))),
        "x with a NaN", "`x` contains 1 non-finite values"),
    row("model-inf-log-prob", api(lambda c: c.model.log_prob(images(value=np.inf), num_samples=2)),
        "x with an inf", "`x` contains 1 non-finite values"),
    row("model-empty-elbo", api(lambda c: c.model.elbo(EMPTY_X)),
        "x [0, 8, 8, 1]",
        "`x` is an empty batch: it holds no examples. Received: shape=[0, 8, 8, 1]"),
    row("model-empty-log-prob", api(lambda c: c.model.log_prob(EMPTY_X, num_samples=2)),
        "x [0, 8, 8, 1]", "`x` is an empty batch"),
    row("model-log-prob-k-0", api(lambda c: c.model.log_prob(images(), num_samples=0)),
        "num_samples=0", "`num_samples` must be an integer >= 1. Received: num_samples=0"),
    row("model-log-prob-k-negative", api(lambda c: c.model.log_prob(images(), num_samples=-3)),
        "num_samples=-3", "`num_samples` must be an integer >= 1. Received: num_samples=-3"),
    row("model-log-prob-k-tensor-0", api(lambda c: c.model.log_prob(
        images(), num_samples=tf.constant(0))), "num_samples=tf.constant(0)",
        "`num_samples` must be an integer >= 1. Received: num_samples=0"),
    row("model-log-prob-chunk-0", api(lambda c: c.model.log_prob(images(), num_samples=10,
                                                                 chunk_size=0)),
        "chunk_size=0", "`chunk_size` must be an integer >= 1. Received: chunk_size=0"),
    row("model-log-prob-chunk-negative", api(lambda c: c.model.log_prob(
        images(), num_samples=10, chunk_size=-1)),
        "chunk_size=-1", "`chunk_size` must be an integer >= 1. Received: chunk_size=-1"),
    row("model-sample-negative", api(lambda c: c.model.sample(-1)),
        "sample(-1)", "`num_samples` must be an integer >= 0. Received: num_samples=-1"),
    row("model-flow-density-log-prob-k-0", api(lambda c: c.tiny("maf").log_prob(
        np.zeros((2, 2), np.float32), num_samples=0)),
        "num_samples=0 (a continuous flow: K unused)", "`num_samples` must be an integer >= 1"),
    row("model-cvae-sample-negative", api(lambda c: c.tiny("cvae").sample(-1)),
        "cvae.sample(-1) (an empty batch before)", "`num_samples` must be an integer >= 0"),
    row("model-cvae-sample-bad-label", api(lambda c: c.tiny("cvae").sample(np.array([0, 10]))),
        "cvae.sample(labels=[0, 10]) (a zero one-hot before)", "`labels` must lie in [0, 10)"),
    row("config-hvae-free-bits-groups", api(lambda c: zoo.hvae.Config(
        dataset="digits", latent_sizes=(32, 16), free_bits_groups=3)),
        "hvae free_bits_groups=3 (layers 32, 16)",
        "`free_bits_groups` must divide every latent layer's size [32, 16]"),
    row("config-pixel-vae-free-bits-groups", api(lambda c: zoo.pixel_vae.Config(
        dataset="digits", latent_size=32, free_bits_groups=5)),
        "pixel_vae free_bits_groups=5 (latent 32)",
        "`free_bits_groups` must divide the latent size [32]"),
    row("evaluate-workdir-chunk-0", api(lambda c: evaluate_lib.evaluate_workdir(
        c.trained, chunk_size=0)), "evaluate_workdir(chunk_size=0)",
        "`chunk_size` must be an integer >= 1"),
    row("gradients-measure-batch-0", api(lambda c: gradients_lib.measure(c.trained, batch_size=0)),
        "measure(batch_size=0)", "`batch_size` must be an integer >= 1"),
    # ------------------------------------------- model (Python API, in a graph)
    row("graph-log-prob-k-0", graph(lambda m, x, k: m.log_prob(x, num_samples=k, seed=SEED),
                                    images(), np.int32(0)),
        "num_samples=0 (a tensor)", "`num_samples` must be an integer >= 1"),
    row("graph-elbo-nan", graph(lambda m, x: m.elbo(x, seed=SEED), images(value=np.nan)),
        "x with a NaN", "`x` contains non-finite values"),
    row("graph-elbo-empty", graph(lambda m, x: m.elbo(x, seed=SEED), EMPTY_X),
        "x [0, 8, 8, 1]", "`x` is an empty batch"),
    row("graph-log-prob-outside-support", graph(
        lambda m, x: m.log_prob(x, num_samples=2, seed=SEED), images(scale=255.0)),
        "x in 0..255", "`x` must be <= 1"),
    row("graph-sample-negative", graph(lambda m, n: m.sample(n, seed=SEED), np.int32(-1)),
        "sample(-1) (a tensor)", "`num_samples` must be an integer >= 0"),
    # --------------------------------------- the SavedModel, TensorFlow alone
    row("saved-log-prob-k-0", saved("log_prob_seeded", x=images(), num_samples=np.int32(0),
                                    seed=SEED),
        "log_prob K=0 (NaN before)", "`num_samples` must be an integer >= 1"),
    row("saved-log-prob-k-negative", saved("log_prob_seeded", x=images(), num_samples=np.int32(-2),
                                           seed=SEED),
        "log_prob K=-2", "`num_samples` must be an integer >= 1"),
    row("saved-log-prob-nan", saved("log_prob_seeded", x=images(value=np.nan),
                                    num_samples=np.int32(2), seed=SEED),
        "log_prob x with a NaN", "`x` contains non-finite values"),
    row("saved-log-prob-outside-support", saved("log_prob_seeded", x=images(scale=255.0),
                                                num_samples=np.int32(2), seed=SEED),
        "log_prob x in 0..255", "`x` must be <= 1"),
    row("saved-log-prob-empty", saved("log_prob_seeded", x=EMPTY_X, num_samples=np.int32(2),
                                      seed=SEED),
        "log_prob x [0, 8, 8, 1]", "`x` is an empty batch"),
    row("saved-elbo-inf", saved("elbo_seeded", x=images(value=np.inf), seed=SEED),
        "elbo x with an inf", "`x` contains non-finite values"),
    row("saved-elbo-empty", saved("elbo_seeded", x=EMPTY_X, seed=SEED),
        "elbo x [0, 8, 8, 1] (integer division by zero before)", "`x` is an empty batch"),
    row("saved-elbo-outside-support", saved("elbo_seeded", x=images(value=-1.0), seed=SEED),
        "elbo x with -1", "`x` must be >= 0"),
    row("saved-batch-only-log-prob-nan", saved("log_prob", x=images(value=np.nan)),
        "batch-only log_prob x with a NaN", "`x` contains non-finite values"),
    row("saved-batch-only-elbo-empty", saved("elbo", x=EMPTY_X),
        "batch-only elbo x [0, 8, 8, 1] (an empty map_fn before its check)",
        "`x` is an empty batch"),
    row("saved-batch-only-log-prob-outside-support", saved("log_prob", x=images(scale=255.0)),
        "batch-only log_prob x in 0..255", "`x` must be <= 1"),
    row("saved-pixels-empty", saved("log_prob_pixels", pixels=np.zeros((0, *SHAPE), np.uint8)),
        "log_prob_pixels pixels [0, 8, 8, 1]", "`pixels` is an empty batch"),
    row("saved-encode-nan", saved("encode", x=images(value=np.nan)),
        "encode x with a NaN (finite output before)", "`x` contains non-finite values"),
    row("saved-encode-outside-support", saved("encode", x=images(scale=255.0)),
        "encode x in 0..255 (loc -134, scale 4e34 before)", "`x` must be <= 1"),
    row("saved-encode-empty", saved("encode", x=EMPTY_X),
        "encode x [0, 8, 8, 1]", "`x` is an empty batch"),
    row("saved-serving-default-nan", saved("serving_default", x=images(value=np.nan)),
        "serving_default x with a NaN", "`x` contains non-finite values"),
    row("saved-decode-nan", saved("decode", z=latents(np.nan)),
        "decode z with a NaN (finite output before)", "`z` contains non-finite values"),
    row("saved-decode-inf", saved("decode", z=latents(np.inf)),
        "decode z with an inf", "`z` contains non-finite values"),
    row("saved-decode-empty", saved("decode", z=np.zeros((0, LATENT), np.float32)),
        "decode z [0, 4]", "`z` is an empty batch"),
    row("saved-sample-negative", saved("sample_seeded", num_samples=np.int32(-1), seed=SEED),
        "sample num_samples=-1 (Dimension -4 before)", "`num_samples` must be an integer >= 0"),
    # ---------------------------- the other model classes' serving endpoints
    row("endpoint-cvae-encode-nan", endpoint("cvae", "encode", x=images(value=np.nan),
                                             labels=LABELS),
        "cvae encode x with a NaN", "`x` contains non-finite values"),
    row("endpoint-cvae-encode-bad-label", endpoint("cvae", "encode", x=images(),
                                                   labels=np.array([3, -1], np.int32)),
        "cvae encode labels [3, -1]", "`labels` must be >= 0"),
    row("endpoint-cvae-decode-bad-label", endpoint("cvae", "decode", z=latents(),
                                                   labels=np.array([3, 10], np.int32)),
        "cvae decode labels [3, 10] (a zero one-hot before)", "`labels` must be < num_classes"),
    row("endpoint-cvae-decode-inf", endpoint("cvae", "decode", z=latents(np.inf), labels=LABELS),
        "cvae decode z with an inf", "`z` contains non-finite values"),
    row("endpoint-cvae-sample-bad-label", endpoint("cvae", "sample_seeded",
                                                   labels=np.array([12], np.int32), seed=SEED),
        "cvae sample labels [12]", "`labels` must be < num_classes"),
    row("endpoint-cvae-batch-only-sample-bad-label", endpoint(
        "cvae", "sample", labels=np.array([12], np.int32), index=np.array([0], np.int32)),
        "cvae batch-only sample labels [12]", "`labels` must be < num_classes"),
    row("endpoint-cvae-log-prob-k-0", endpoint("cvae", "log_prob_seeded", x=images(), labels=LABELS,
                                               num_samples=np.int32(0), seed=SEED),
        "cvae log_prob K=0", "`num_samples` must be an integer >= 1"),
    row("endpoint-hvae-encode-outside-support", endpoint("hvae", "encode", x=images(scale=255.0)),
        "hvae encode x in 0..255", "`x` must be <= 1"),
    row("endpoint-hvae-decode-empty", endpoint("hvae", "decode", z=np.zeros((0, 6), np.float32)),
        "hvae decode z [0, 6]", "`z` is an empty batch"),
    row("endpoint-hvae-decode-nan", endpoint("hvae", "decode", z=np.full((2, 6), np.nan,
                                                                         np.float32)),
        "hvae decode z of NaNs", "`z` contains non-finite values"),
    row("endpoint-hvae-sample-negative", endpoint("hvae", "sample_seeded", num_samples=np.int32(-1),
                                                  seed=SEED),
        "hvae sample num_samples=-1", "`num_samples` must be an integer >= 0"),
    row("endpoint-hvae-sample-temperature-negative", endpoint(
        "hvae", "sample_temperature_seeded", num_samples=np.int32(-2), seed=SEED,
        temperature=np.float32(1.0)),
        "hvae sample_temperature num_samples=-2", "`num_samples` must be an integer >= 0"),
    row("endpoint-hvae-log-prob-k-0", endpoint("hvae", "log_prob_seeded", x=images(),
                                               num_samples=np.int32(0), seed=SEED),
        "hvae log_prob K=0", "`num_samples` must be an integer >= 1"),
    row("endpoint-m2-classify-nan", endpoint("m2", "classify", x=images(value=np.nan)),
        "m2 classify x with a NaN", "`x` contains non-finite values"),
    row("endpoint-m2-encode-outside-support", endpoint("m2", "encode", x=images(value=2.0),
                                                       labels=LABELS),
        "m2 encode x with 2.0", "`x` must be <= 1"),
    row("endpoint-m2-log-prob-k-0", endpoint("m2", "log_prob_seeded", x=images(),
                                             num_samples=np.int32(0), seed=SEED),
        "m2 log_prob K=0", "`num_samples` must be an integer >= 1"),
    row("endpoint-pixel-vae-sample-negative", endpoint("pixel_vae", "sample_seeded",
                                                       num_samples=np.int32(-1), seed=SEED),
        "pixel_vae sample num_samples=-1", "`num_samples` must be an integer >= 0"),
    row("endpoint-maf-log-prob-k-0", endpoint("maf", "log_prob_seeded",
                                              x=np.zeros((2, 2), np.float32),
                                              num_samples=np.int32(0), seed=SEED),
        "maf (continuous) log_prob K=0", "`num_samples` must be an integer >= 1"),
    row("endpoint-maf-sample-negative", endpoint("maf", "sample_seeded", num_samples=np.int32(-1),
                                                 seed=SEED),
        "maf sample num_samples=-1", "`num_samples` must be an integer >= 0"),
    row("endpoint-maf-elbo-empty", endpoint("maf", "elbo_seeded", x=np.zeros((0, 2), np.float32),
                                            seed=SEED),
        "maf elbo x [0, 2]", "`x` is an empty batch"),
]


# ----------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained workdir (with model.keras and export/1/) shared by all rows."""
    workdir = str(tmp_path_factory.mktemp("bad_input") / "trained")
    config = zoo.vae.Config(dataset="digits", epochs=1, hidden_units=(16,), latent_size=LATENT,
                            jit_compile=False, image_summaries=False, eval_num_samples=4)
    train.run(config, zoo.vae.build_model, workdir)
    return workdir


@pytest.fixture(scope="module")
def model(trained):
    return workdirs.load_model(os.path.join(trained, "model.keras"))


def _tiny_model(name):
    """An untrained, built tiny model of class `name` (8x8 digits; "maf": 2-D points)."""
    from tfvae.distributions import families
    from tfvae.distributions import latents as latents_lib
    from tfvae.models import m2
    from tfvae.nn import networks
    import zoo.cvae
    import zoo.maf

    digits = datasets.info("digits")
    if name == "cvae":
        model = zoo.cvae.build_model(zoo.cvae.Config(
            dataset="digits", hidden_units=(8,), latent_size=LATENT), digits)
        return _built(model, images())
    if name == "hvae":       # latents 4 + 2: z [N, 6]
        model = zoo.hvae.build_model(zoo.hvae.Config(
            dataset="digits", latent_sizes=(4, 2), hidden_units=(8, 8), depth=1), digits)
    elif name == "pixel_vae":
        model = zoo.pixel_vae.build_model(zoo.pixel_vae.Config(
            dataset="digits", latent_size=LATENT, hidden_units=(8,), decoder_filters=(4,),
            context_channels=2, pixelcnn_filters=4, pixelcnn_layers=1, free_bits_groups=1),
            digits)
    elif name == "maf":
        model = zoo.maf.build_model(zoo.maf.Config(num_flows=1, hidden_units=(8,)),
                                    datasets.info("two_moons"))
        return _built(model, np.zeros((2, 2), np.float32))
    else:
        likelihood = families.Bernoulli(SHAPE)
        model = m2.M2(networks.MLP((), 8, output_activation="relu"),
                      networks.MLP((8,), likelihood.params_size),
                      latents_lib.LatentLayer(families.DiagonalGaussian(LATENT)), likelihood,
                      classifier=networks.MLP((8,), 10), num_classes=10)
    return _built(model, images())


def _built(model, data):
    model(data)
    return model


@pytest.fixture(scope="module")
def tiny_models():
    """`_tiny_model(name)`, each built once."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _tiny_model(name)
        return cache[name]
    return get


_TF_ONLY = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    saved_model, inputs, calls, out = sys.argv[1:]
    loaded = tf.saved_model.load(saved_model)
    arrays = np.load(inputs)
    results = {}
    for key, signature in json.load(open(calls)).items():
        args = {name.split("__", 1)[1]: tf.constant(arrays[name])
                for name in arrays.files if name.split("__", 1)[0] == key}
        try:
            value = loaded.signatures[signature](**args)
            results[key] = {"ok": {k: np.asarray(v).tolist() for k, v in value.items()}}
        except Exception as e:  # the error each bad input must raise
            results[key] = {"error": type(e).__name__, "message": str(e)}
    json.dump({"results": results, "tfvae": "tfvae" in sys.modules,
               "tfp": "tensorflow_probability" in sys.modules}, open(out, "w"))
""")


@pytest.fixture(scope="module")
def saved_model_results(trained, tmp_path_factory):
    """{row id: result} of every `saved` row, called in one TensorFlow-only process."""
    directory = tmp_path_factory.mktemp("tf_only")
    calls, arrays = {}, {}
    for param in ROWS:
        how = param.values[0]
        if isinstance(how, Saved):
            calls[param.id] = how.signature
            arrays.update({f"{param.id}__{name}": value for name, value in how.inputs})
    np.savez(directory / "inputs.npz", **arrays)
    (directory / "calls.json").write_text(json.dumps(calls))
    out = directory / "out.json"
    process = subprocess.run(
        [sys.executable, "-c", _TF_ONLY, export_lib.latest_export(trained),
         str(directory / "inputs.npz"), str(directory / "calls.json"), str(out)],
        capture_output=True, text=True, timeout=300, env=_env(), cwd=str(directory))
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not result["tfvae"] and not result["tfp"], "the worker must import TensorFlow alone"
    return result["results"]


def _env():
    return {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _files(directory):
    """{relative path: (size, mtime)} of every file below `directory`."""
    found = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            stat = os.stat(path)
            found[os.path.relpath(path, directory)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _planted(trained, tmp_path):
    """A copy of the trained workdir whose model.keras holds a `Lambda` layer that would
    create the file `sentinel` if its code ever ran."""
    import keras

    directory = tmp_path / "planted"
    directory.mkdir()
    shutil.copy(os.path.join(trained, "config.json"), directory)
    sentinel = tmp_path / "code_ran"
    function = eval(f"lambda x: (open({str(sentinel)!r}, 'w').close(), x)[1]")  # noqa: S307
    keras.Sequential([keras.Input(SHAPE), keras.layers.Lambda(function)]).save(
        directory / "model.keras")
    sentinel.unlink(missing_ok=True)       # building the layer ran it once, here
    return str(directory), sentinel


@dataclasses.dataclass
class Context:
    """What an `api` row's function receives."""
    model: object
    trained: str
    tmp_path: object
    empty: str
    tiny: object


# -------------------------------------------------------------------------- table
@pytest.mark.parametrize("how, bad, message", ROWS)
def test_bad_input_is_refused_naming_it(how, bad, message, request, tmp_path):
    del bad   # documents the row (and its id)
    if isinstance(how, Cli):
        _check_cli(how, message, request, tmp_path)
    elif isinstance(how, Api):
        empty = tmp_path / "empty"
        empty.mkdir()
        context = Context(request.getfixturevalue("model"), request.getfixturevalue("trained"),
                          tmp_path, str(empty), request.getfixturevalue("tiny_models"))
        with pytest.raises(ValueError) as error:
            how.fn(context)
        assert message in str(error.value)
    elif isinstance(how, Graph):
        model = request.getfixturevalue("model")
        function = tf.function(lambda *args: how.fn(model, *args))
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            function(*[tf.constant(a) for a in how.args])
        assert message in str(error.value)
    elif isinstance(how, Endpoint):
        model = request.getfixturevalue("tiny_models")(how.model)
        fn, specs = {name: (fn, specs) for name, fn, specs in model.serving_endpoints()}[
            how.signature]
        inputs = dict(how.inputs)
        assert sorted(inputs) == sorted(spec.name for spec in specs), [s.name for s in specs]
        function = tf.function(fn, input_signature=specs)   # as `export_saved_model` traces it
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            function(*[tf.constant(inputs[spec.name], spec.dtype) for spec in specs])
        assert message in str(error.value)
    else:
        result = request.getfixturevalue("saved_model_results")[request.node.callspec.id]
        assert result.get("error") == "InvalidArgumentError", result
        assert message in result["message"], result["message"][:2000]


def _check_cli(how, message, request, tmp_path):
    places = {"new": str(tmp_path / "workdir"), "empty": str(tmp_path / "empty")}
    os.makedirs(places["empty"])
    watched, sentinel = [places["empty"]], None
    args = " ".join(how.args)
    if "{trained}" in args:
        places["trained"] = request.getfixturevalue("trained")
        watched.append(places["trained"])
    if "{planted}" in args:
        places["planted"], sentinel = _planted(request.getfixturevalue("trained"), tmp_path)
        watched.append(places["planted"])
    before = {d: _files(d) for d in watched}
    process = subprocess.run([sys.executable, "-m", *(a.format(**places) for a in how.args)],
                             capture_output=True, text=True, timeout=600, env=_env(),
                             cwd=str(tmp_path))
    output = process.stdout + process.stderr
    assert process.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    if not how.traceback:
        assert "Traceback" not in output, output[-3000:]
    assert not os.path.exists(places["new"]), sorted(_files(places["new"]))
    for directory, files in before.items():
        assert _files(directory) == files, directory
    if sentinel is not None:
        assert not sentinel.exists(), "the planted Lambda layer's code ran"
