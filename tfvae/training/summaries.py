"""TensorBoard summaries a VAE researcher compares runs by, beyond Keras's epoch scalars.

Per epoch (written by `callbacks.ImageSummaries` at the epoch scalars' step):
  - `kl_per_dimension`: the mean KL(q(z_i|x) || p(z_i)) of every latent
    dimension over a fixed held-out batch (book §2.8.1: a dimension whose KL
    stays near 0 is unused, the posterior collapsed onto the prior there);
  - `latent_traversal`: decoder means with one latent dimension of one
    example's posterior mean swept over a range, the others kept.
At the end of a run (`write_final`, called by `train.run` after
`metrics.json`): the test metrics as scalars (run "test", at the last
epoch's step), the run's config as HParams with its final metrics, so
that the HParams dashboard compares the runs of a sweep, and
(`write_projector`) the test posterior means for the Embedding Projector
with their labels and an image sprite (run "projector").
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorboard.plugins import projector
from tensorboard.plugins.hparams import api as hparams_api

from tfvae.distributions import discrete_latents
from tfvae.objectives import elbo as elbo_objectives

TRAVERSAL_VALUES = tuple(np.linspace(-3.0, 3.0, 7))
"""The values a traversed latent dimension takes (prior standard deviations of N(0, 1))."""
TRAVERSAL_DIMENSIONS = 8
"""Latent dimensions traversed (the first ones)."""
ACTIVE_KL_NATS = 0.01
"""A latent dimension whose mean KL exceeds this (nats) counts as active."""
MAX_KL_SCALARS = 64
"""Latent dimensions that get their own KL scalar (all get the histogram)."""
PROJECTOR_EXAMPLES = 1024
"""Test examples whose posterior means go to the Embedding Projector (a 32 x 32 sprite)."""

_DESCRIPTIONS = {
    "elbo": "Test ELBO (single-sample estimate, nats per example; book §2.2).",
    "elbo_stderr": "Standard error of the test ELBO over examples (nats).",
    "log_likelihood": "Test log p(x) by importance sampling with K = {k} samples per example "
                      "(nats per example; a stochastic lower bound, book §2.6).",
    "log_likelihood_stderr": "Standard error of the IS log p(x) over examples (nats).",
    "bits_per_dim": "-log p(x) / (D log 2) from the IS estimate with K = {k} (book §2.6).",
    "bits_per_dim_stderr": "Standard error of bits/dim over examples.",
    "bits_per_dim_density_256": "Density on the [0, 256]^D scale in bits/dim (K = {k}): an "
                                "approximation of a discrete bits/dim, not a bound.",
    "n": "Test examples evaluated.",
    "best_validation_elbo": "The best epoch's validation ELBO (its weights were tested).",
    "accuracy": "Test classification accuracy of q(y|x).",
    "num_importance_samples": "K, importance samples per test example.",
}


def _context(model, batch):
    """(x [B, ...], the condition p(x|z, ·) and q(z|x, ·) take, or None) of a batch."""
    data = model.read_batch(batch)
    return data.x, data.context if data.context is not None else data.labels


def kl_per_dimension(model, batch, seed=(0, 0)):
    """Mean KL per latent dimension over `batch`, or None where it is not defined.

    A VAE whose `encode` gives a factorized Gaussian q(z|x) and whose prior is
    factorized (`kl_support().per_dimension`) gets the closed form per
    dimension (`tfvae.objectives.elbo.kl_per_dimension`); another model whose
    KL splits per dimension (a hierarchy with layers of equal sizes and no
    IAF) gets its training terms' per-dimension groups (`Terms.kl_groups`).

    Args:
      model: a built `LatentVariableModel`.
      batch: a batch {"image": [B, H, W, C], "label": [B]} (or the images).
      seed: int32 [2] stateless seed of the draws a Monte-Carlo KL needs (the
        model's own generators are not advanced).

    Returns:
      [D] float32 numpy array (D: the latent size, or the concatenated layers'
      sizes), or None.
    """
    try:
        support = model.kl_support()
    except NotImplementedError:          # a model without latents (a flow density)
        return None
    if not support.per_dimension:
        return None
    x, context = _context(model, batch)
    q = model.encode(x, context) if hasattr(model, "encode") else None
    if isinstance(q, tfp.distributions.Distribution) and hasattr(model, "prior"):
        kl = elbo_objectives.kl_per_dimension(q, model.prior())              # [B, d]
    elif len(set(support.group_sizes)) == 1:
        terms = model.objective_terms(batch, tf.constant(seed, tf.int32), num_samples=1,
                                      analytic_kl=support.analytic)
        if terms.kl_groups is None:
            return None
        kl = terms.kl_groups(support.group_sizes[0])                     # [..., B, L * d]
    else:
        return None
    kl = tf.reshape(kl, [-1, kl.shape[-1]])
    return tf.reduce_mean(kl, axis=0).numpy()


def latent_traversal(model, batch, values=TRAVERSAL_VALUES, num_dimensions=TRAVERSAL_DIMENSIONS):
    """Decoder means E[x|z] with one latent dimension of one example swept.

    z starts at the posterior summary point (the mean of q(z|x), or for a flow
    posterior the flowed base mean) of the batch's first example; row i sets
    dimension i to each of `values` in turn (one column each), the other
    dimensions kept. Conditional models decode with that example's label.

    Args:
      model: a built model with `posterior_summary` and `decode` over a flat
        z [N, D] (VAEs and hierarchies; not discrete latents, where a sweep
        over real values means nothing).
      batch: a batch {"image": [B, H, W, C], "label": [B]}.
      values: the m values a dimension takes.
      num_dimensions: the first k dimensions are swept (fewer if D < k).

    Returns:
      [k * m, H, W, C] numpy images (row-major: dimension, then value), or None
      for a model without such latents.
    """
    if not (hasattr(model, "posterior_summary") and hasattr(model, "decode")):
        return None
    family = getattr(getattr(model, "latent", None), "posterior_family", None)
    if isinstance(family, discrete_latents.RelaxedCategorical):
        return None
    x, context = _context(model, batch)
    first = None if context is None else context[:1]
    loc = model.posterior_summary(x[:1], first)["loc"].numpy()               # [1, D]
    k, m = min(num_dimensions, loc.shape[-1]), len(values)
    z = np.repeat(loc, k * m, axis=0)                                        # [k * m, D]
    for i in range(k):
        z[i * m:(i + 1) * m, i] = values
    repeated = None if first is None else tf.repeat(first, k * m, axis=0)
    return model.decode(tf.constant(z), repeated).mean().numpy()


def traversal_description(num_rows, values=TRAVERSAL_VALUES):
    """The caption of a `latent_traversal` grid."""
    return (f"Row i (i = 0..{num_rows - 1}): latent dimension i of the first held-out example's "
            f"posterior mean set to {', '.join(f'{v:g}' for v in values)} (columns), the "
            "other dimensions kept; decoder means E[x|z].")


def write_kl_per_dimension(kl):
    """Writes KL per dimension [D] to the default writer: a histogram over the
    dimensions, the count of active ones and, for D <= `MAX_KL_SCALARS`, one
    scalar per dimension ("kl_per_dimension/dim_00", ...)."""
    where = "the fixed held-out batch"
    tf.summary.histogram("kl_per_dimension", kl,
                         description=f"Mean KL(q(z_i|x) || p(z_i)) of each latent dimension "
                                     f"over {where} (nats; book §2.8.1).")
    tf.summary.scalar("kl_active_dimensions", int(np.sum(kl > ACTIVE_KL_NATS)),
                      description=f"Latent dimensions whose mean KL over {where} exceeds "
                                  f"{ACTIVE_KL_NATS} nats (the others are unused).")
    if len(kl) <= MAX_KL_SCALARS:
        for i, value in enumerate(kl):
            tf.summary.scalar(f"kl_per_dimension/dim_{i:02d}", float(value),
                              description=f"Mean KL of latent dimension {i} over {where} (nats).")


def _hparam_value(value):
    """A config value as an HParams value (bool, int, float or str)."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if value is None:
        return ""
    return value


def write_projector(directory, model, dataset, max_examples=PROJECTOR_EXAMPLES):
    """Writes the posterior means of the first test examples for the Embedding Projector.

    `directory` gets the means [N, D] as a checkpointed variable, `metadata.tsv`
    (the labels, -1 where the data has none), `sprite.png` (the images, a
    square grid, row-major), `projector_config.pbtxt` naming them, and an
    event file with a text summary saying what they are (the projector looks
    for its config in runs: folders with event files).

    Args:
      directory: the projector's run folder (`WORKDIR/tensorboard/projector`).
      model: a built model with `posterior_summary` (others: nothing is written).
      dataset: batches {"image": [B, H, W, C] in [0, 1], "label": [B]}.
      max_examples: N, the examples used.

    Returns:
      N, or 0 if nothing was written.
    """
    if not hasattr(model, "posterior_summary"):
        return 0
    means, labels, images = [], [], []
    for batch in dataset:
        x, context = _context(model, batch)
        means.append(model.posterior_summary(x, context)["loc"].numpy())
        images.append(np.asarray(x))
        labels.append(np.asarray(batch["label"]) if isinstance(batch, dict) and "label" in batch
                      else np.full(len(x), -1))
        if sum(map(len, means)) >= max_examples:
            break
    if not means:
        return 0
    means = np.concatenate(means)[:max_examples].reshape(-1, means[0].shape[-1])
    labels = np.concatenate(labels)[:max_examples]
    images = np.concatenate(images)[:max_examples]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        return 0
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "metadata.tsv"), "w", encoding="utf-8") as f:
        f.write("".join(f"{int(label)}\n" for label in labels))
    side = int(np.ceil(np.sqrt(len(images))))
    sprite = image_grid(np.clip(images, 0.0, 1.0), side)[0]
    tf.io.write_file(os.path.join(directory, "sprite.png"),
                     tf.io.encode_png(tf.constant(np.round(sprite * 255).astype(np.uint8))))
    checkpoint = tf.train.Checkpoint(posterior_mean=tf.Variable(means, name="posterior_mean"))
    checkpoint.save(os.path.join(directory, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "posterior_mean/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = "metadata.tsv"
    embedding.sprite.image_path = "sprite.png"
    embedding.sprite.single_image_dim.extend(images.shape[1:3])
    projector.visualize_embeddings(directory, config)
    # An event file makes the folder a run, which is where the projector looks.
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default(step=0):
        tf.summary.text("embedding", f"Posterior means E_q[z] [{means.shape[0]}, "
                        f"{means.shape[1]}] of the first {means.shape[0]} test examples; "
                        "labels in metadata.tsv, images in sprite.png.")
    writer.close()
    return len(means)


def image_grid(images, columns):
    """Tiles images [n, H, W, C] into one [1, rows*H, columns*W, C] grid (zero-padded)."""
    images = np.asarray(images)
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * height, columns * width, channels), images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return grid[np.newaxis]


def write_final(log_dir, config, metrics, model=None, dataset=None):
    """Writes a finished run's test metrics and its config to TensorBoard.

    Scalars "test/<metric>" (every numeric `test_*` entry of `metrics`:
    ELBO, IS log p(x) with K, bits/dim where defined, their standard errors,
    and e.g. M2's accuracy) and "test/best_validation_elbo" go to the run
    `log_dir/test` at the step of the last epoch's scalars (epochs done - 1).
    The config (`config.to_json()`, lists as comma-separated strings) goes to
    `log_dir` itself as HParams, so the HParams dashboard lists this run
    with its metrics: the test scalars and the last epoch scalars of Keras's
    "train" and "validation" runs.

    With `model` and `dataset` (the test set) and `config.image_summaries`,
    `write_projector` fills the run `log_dir/projector`.

    Args:
      log_dir: the run's TensorBoard directory (`WORKDIR/tensorboard`).
      config: the run's `TrainConfig`.
      metrics: the dict `train.run` wrote to metrics.json.
      model: the evaluated model, or None.
      dataset: the test batches, or None.
    """
    step = max(int(metrics.get("epochs_done", 1)) - 1, 0)
    k = metrics.get("test_num_importance_samples")
    values = {name[len("test_"):]: value for name, value in metrics.items()
              if name.startswith("test_")}
    values["best_validation_elbo"] = metrics.get("best_validation_elbo")
    writer = tf.summary.create_file_writer(os.path.join(log_dir, "test"))
    with writer.as_default(step=step):
        for name, value in sorted(values.items()):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue                  # None (not estimated), strings (likelihood_kind)
            description = _DESCRIPTIONS.get(name, name.replace("_", " ")).format(k=k)
            tf.summary.scalar(f"test/{name}", value, description=description)
    writer.close()
    session = {name: _hparam_value(value) for name, value in config.to_json().items()}
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default(step=step):
        hparams_api.hparams(session)        # trial id: a hash of the config (repeats group)
    writer.close()
    if model is not None and dataset is not None and getattr(config, "image_summaries", True):
        write_projector(os.path.join(log_dir, "projector"), model, dataset)
