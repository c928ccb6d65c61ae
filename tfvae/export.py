"""SavedModel export with serving signatures, loadable by TensorFlow alone.

The endpoints return dicts of tensors (never `tfd` objects, which reload only
with TFP imported and as DT_INVALID outputs): `encode`, `decode`, `sample`,
`elbo`, `log_prob`. `saved_model_cli show --all` lists them, TF Serving
serves them, and `tf.saved_model.load` in a process that imports only
TensorFlow calls them.
"""

import keras
import tensorflow as tf

SIGNATURES = ("encode", "decode", "sample", "elbo", "log_prob")


def export_saved_model(model, path, chunk_size=100):
    """Writes `model` as a SavedModel with the serving signatures at `path`.

    Signatures (batch dimensions are dynamic):
      encode(x [n, H, W, C] float32) -> {loc [n, d], scale [n, d]}: the mean and
        marginal standard deviations of q(z|x).
      decode(z [n, d] float32) -> {mean [n, H, W, C]}: E[x|z].
      sample(num_samples [] int32, seed [2] int32) -> {images [num_samples, H, W, C]}:
        decoder means at z ~ p(z).
      elbo(x, seed [2] int32) -> {elbo [n]}: single-sample ELBO estimate.
      log_prob(x, num_samples [] int32, seed [2] int32) -> {log_prob [n]}:
        importance-sampled log p(x) with K = num_samples (book §2.6).

    Args:
      model: a built `tfvae.models.VAE` (call it once on data before export).
      path: output directory.
      chunk_size: samples per chunk in `log_prob` (memory bound).

    Raises:
      ValueError: the model is not built.
    """
    if not model.built:
        raise ValueError("The model must be built before export: call it once on a batch. "
                         f"Received: an unbuilt {type(model).__name__}")
    image = tf.TensorSpec([None, *model.image_shape], tf.float32, name="x")
    latent = tf.TensorSpec([None, model.latent.latent_size], tf.float32, name="z")
    seed = tf.TensorSpec([2], tf.int32, name="seed")
    count = tf.TensorSpec([], tf.int32, name="num_samples")

    def encode(x):
        q = model.encode(x)
        return {"loc": q.mean(), "scale": q.stddev()}

    def decode(z):
        return {"mean": model.decode(z).mean()}

    def sample(num_samples, seed):
        return {"images": model.sample(num_samples, seed=seed)}

    def elbo(x, seed):
        return {"elbo": model.elbo(x, seed=seed)}

    def log_prob(x, num_samples, seed):
        return {"log_prob": model.log_prob(x, num_samples=num_samples, chunk_size=chunk_size,
                                           seed=seed)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("encode", tf.function(encode), input_signature=[image])
    archive.add_endpoint("decode", tf.function(decode), input_signature=[latent])
    archive.add_endpoint("sample", tf.function(sample), input_signature=[count, seed])
    archive.add_endpoint("elbo", tf.function(elbo), input_signature=[image, seed])
    archive.add_endpoint("log_prob", tf.function(log_prob), input_signature=[image, count, seed])
    archive.write_out(path, verbose=False)
    return path
