"""SavedModel export for TF Serving: serving signatures in a versioned layout.

The endpoints return dicts of tensors (never `tfd` objects, which reload only
with TFP imported and as DT_INVALID outputs); each model lists its own
(`serving_endpoints`): a VAE's `encode`, `decode`, `sample`, `elbo`,
`log_prob` (batch-only: every input has a batch dimension, so TF Serving's row
format can send it; random draws use a fixed seed and `log_prob` a K fixed
at export) and their `*_seeded` versions with an explicit seed and K. Where
the model reads images, `*_pixels` signatures take the raw uint8 images and
apply the data pipeline's preprocessing inside (`PixelPreprocessing`).
`saved_model_cli show --all` lists them, TF Serving serves them, and
`tf.saved_model.load` in a process that imports only TensorFlow calls them.
Each endpoint checks its inputs in the graph (the model's `check_values`,
`check_latents`, `check_count`): a bad input fails with an
`InvalidArgumentError` naming it instead of giving NaN or a plausible wrong
number. docs/serving.md shows the REST and gRPC requests of every signature.

Layout (what `tensorflow_model_server --model_base_path=WORKDIR/export`
expects): `WORKDIR/export/<version>/`, a new integer version per export
(one more than the largest present), written to a hidden temporary folder
and renamed into place, so the server never sees a partial version; the
newest `keep` versions are kept.
"""

import dataclasses
import os
import re
import shutil
import uuid

import keras
import tensorflow as tf

EXPORT_DIR = "export"
_TMP_PREFIX = ".tmp-"
_PIXEL_SUFFIX = "_pixels"


@dataclasses.dataclass(frozen=True)
class PixelPreprocessing:
    """How the data pipeline turns uint8 pixels into the model's input.

    x = pixels / max_value (grey values in [0, 1], `tfvae.data.datasets`);
    with `binarize`, x = 1 where pixels / max_value >= 0.5 and 0 elsewhere.
    Training binarizes stochastically (x ~ Bernoulli(grey)); serving must be
    deterministic, and thresholding at 0.5 gives the most probable binary
    image under that draw.

    Attributes:
      max_value: the largest pixel value (255 for 8-bit data, 1 for binary data).
      binarize: threshold the grey values at 0.5 (runs trained on binarized data).
    """

    max_value: int
    binarize: bool

    def __call__(self, pixels):
        """The model input float32 [B, H, W, C] of uint8 `pixels` [B, H, W, C] (checked in
        graph: a non-empty batch, values <= max_value)."""
        checks = [tf.debugging.assert_positive(
            tf.shape(pixels)[0], message="`pixels` is an empty batch: it holds no examples")]
        if self.max_value < 255:
            checks.append(tf.debugging.assert_less_equal(
                pixels, tf.cast(self.max_value, pixels.dtype),
                message=f"`pixels` must be <= {self.max_value}."))
        with tf.control_dependencies(checks):
            x = tf.cast(pixels, tf.float32) / float(self.max_value)
        return tf.cast(x >= 0.5, tf.float32) if self.binarize else x

    def describe(self):
        """One sentence for the docs and logs."""
        if self.binarize:
            return (f"x = 1.0 where pixels / {self.max_value} >= 0.5, else 0.0 "
                    "(deterministic binarization)")
        return f"x = pixels / {self.max_value}"


def pixel_preprocessing(dataset_info, binarize, example_shape):
    """The `PixelPreprocessing` of a run, or None when the model does not read images.

    Args:
      dataset_info: the `DatasetInfo` of the run's dataset (`tfvae.data.datasets.info`).
      binarize: the run's `binarize` ("dynamic", "static" or "none").
      example_shape: the shape of one model input; pixel signatures are made only
        when it is the dataset's image shape [H, W, C] (not e.g. M1 features).
    """
    shape = tuple(dataset_info.image_shape)
    if not dataset_info.num_bits or len(shape) != 3 or tuple(example_shape) != shape:
        return None
    return PixelPreprocessing(max_value=2 ** dataset_info.num_bits - 1,
                              binarize=binarize != "none" and dataset_info.num_bits > 1)


def pixel_endpoints(endpoints, preprocessing):
    """`<name>_pixels` for every batch-only endpoint that reads images `x`.

    The new endpoint takes uint8 `pixels` [B, H, W, C] where the original
    takes `x`, and its other inputs unchanged.

    Args:
      endpoints: [(name, fn, input signature)] (`serving_endpoints`).
      preprocessing: a `PixelPreprocessing`.
    """
    added = []
    for name, fn, specs in endpoints:
        names = [spec.name for spec in specs]
        if "x" not in names or "seed" in names or "num_samples" in names:
            continue
        where = names.index("x")
        pixels = tf.TensorSpec(specs[where].shape, tf.uint8, name="pixels")
        added.append((name + _PIXEL_SUFFIX, _from_pixels(fn, where, preprocessing),
                      [*specs[:where], pixels, *specs[where + 1:]]))
    return added


def _from_pixels(fn, where, preprocessing):
    """`fn` with its argument number `where` preprocessed from pixels."""
    def call(*args):
        args = list(args)
        args[where] = preprocessing(args[where])
        return fn(*args)
    return call


def export_saved_model(model, path, chunk_size=100, log_prob_samples=100, pixels=None):
    """Writes `model` as a SavedModel with its serving signatures at `path`.

    The model lists its endpoints through
    `model.serving_endpoints(chunk_size, log_prob_samples)` (name, function
    returning a dict of tensors, input signature), see
    `tfvae.models.VAE.serving_endpoints`; with `pixels`, `pixel_endpoints`
    adds their uint8 versions.

    Args:
      model: a built model (call it once on data before export).
      path: output directory.
      chunk_size: samples per chunk in `log_prob` (memory bound).
      log_prob_samples: K of the batch-only `log_prob(x)`.
      pixels: a `PixelPreprocessing`, or None for no `*_pixels` signatures.

    The SavedModel also holds the string variable collection
    `likelihood_support` (the model's `likelihood_support`).

    Returns:
      `path`.

    Raises:
      ValueError: the model is not built.
    """
    if not model.built:
        raise ValueError("The model must be built before export: call it once on a batch. "
                         f"Received: an unbuilt {type(model).__name__}")
    endpoints = model.serving_endpoints(chunk_size, log_prob_samples)
    if pixels is not None:
        endpoints += pixel_endpoints(endpoints, pixels)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, signature in endpoints:
        archive.add_endpoint(name, tf.function(fn), input_signature=signature)
    # What `log_prob` measures (see `tfvae.evaluation.estimators`), readable as
    # `tf.saved_model.load(path).likelihood_support[0]`.
    archive.add_variable_collection(
        "likelihood_support", [tf.Variable(model.likelihood_support, trainable=False)])
    archive.write_out(path, verbose=False)
    return path


# ----------------------------------------------------------------- versioned layout
def export_versions(export_dir):
    """The versions [int] in `export_dir`, ascending: its folders named by an integer
    that hold a saved_model.pb (what TF Serving loads). [] if it does not exist."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if re.fullmatch(r"[0-9]+", name)
                  and os.path.isfile(os.path.join(export_dir, name, "saved_model.pb")))


def export_dir_of(path):
    """`path/export` if `path` is a workdir holding one, else `path` (an export folder)."""
    inner = os.path.join(path, EXPORT_DIR)
    return inner if os.path.isdir(inner) else path


def latest_export(path):
    """The newest version folder of an export: `path` is a workdir or its `export/`.

    Raises:
      FileNotFoundError: no version is there (naming the folder looked in).
    """
    export_dir = export_dir_of(path)
    versions = export_versions(export_dir)
    if not versions:
        raise FileNotFoundError(
            f"No exported SavedModel version under {path}: looked for "
            f"{os.path.join(path, EXPORT_DIR, '<integer>', 'saved_model.pb')} and "
            f"{os.path.join(path, '<integer>', 'saved_model.pb')}. Train with --export=true "
            "(a workdir written before versioned exports has saved_model/ instead: re-run "
            "its command to export again).")
    return os.path.join(export_dir, str(versions[-1]))


def write_version(model, export_dir, keep=3, **export_kwargs):
    """Exports `model` as the next version in `export_dir`, keeping the newest `keep`.

    The SavedModel is written to a hidden temporary folder in `export_dir`
    (TF Serving ignores names that are not integers) and renamed to its version
    folder in one step: an interrupted export leaves no partial version, and
    its temporary folder is removed by the next export.

    Args:
      model: a built model.
      export_dir: the versions' parent folder (`--model_base_path` of the server).
      keep: versions kept (>= 1); older ones are deleted.
      **export_kwargs: `export_saved_model`'s (chunk_size, log_prob_samples, pixels).

    Returns:
      The new version's folder.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"`keep` must be an integer >= 1. Received: keep={keep!r}")
    os.makedirs(export_dir, exist_ok=True)
    for name in os.listdir(export_dir):       # left by an interrupted export
        if name.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(export_dir, name), ignore_errors=True)
    tmp = os.path.join(export_dir, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
    export_saved_model(model, tmp, **export_kwargs)
    while True:
        taken = [int(n) for n in os.listdir(export_dir) if re.fullmatch(r"[0-9]+", n)]
        path = os.path.join(export_dir, str(max(taken, default=0) + 1))
        try:
            os.rename(tmp, path)   # fails if another export took this version meanwhile
            break
        except OSError:
            if not os.path.exists(path):
                raise
    for version in export_versions(export_dir)[:-keep]:
        shutil.rmtree(os.path.join(export_dir, str(version)), ignore_errors=True)
    return path
