"""SavedModel export with serving signatures, loadable by TensorFlow alone.

The endpoints return dicts of tensors (never `tfd` objects, which reload only
with TFP imported and as DT_INVALID outputs); each model lists its own
(`serving_endpoints`): a VAE's `encode`, `decode`, `sample`, `elbo`,
`log_prob`, a flow density model's `log_prob`, `elbo`, `sample`. `saved_model_cli show --all` lists them, TF Serving
serves them, and `tf.saved_model.load` in a process that imports only
TensorFlow calls them. Each endpoint checks its inputs in the graph (the
model's `check_values`, `check_latents`, `check_count`): a bad input fails
with an `InvalidArgumentError` naming it instead of giving NaN or a plausible
wrong number.
"""

import keras
import tensorflow as tf

def export_saved_model(model, path, chunk_size=100):
    """Writes `model` as a SavedModel with its serving signatures at `path`.

    The model lists its endpoints through `model.serving_endpoints(chunk_size)`
    (name, function returning a dict of tensors, input signature), see
    `tfvae.models.VAE.serving_endpoints`.

    Args:
      model: a built model (call it once on data before export).
      path: output directory.
      chunk_size: samples per chunk in `log_prob` (memory bound).

    The SavedModel also holds the string variable collection
    `likelihood_support` (the model's `likelihood_support`).

    Raises:
      ValueError: the model is not built.
    """
    if not model.built:
        raise ValueError("The model must be built before export: call it once on a batch. "
                         f"Received: an unbuilt {type(model).__name__}")
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, signature in model.serving_endpoints(chunk_size):
        archive.add_endpoint(name, tf.function(fn), input_signature=signature)
    # What `log_prob` measures (see `tfvae.evaluation.estimators`), readable as
    # `tf.saved_model.load(path).likelihood_support[0]`.
    archive.add_variable_collection(
        "likelihood_support", [tf.Variable(model.likelihood_support, trainable=False)])
    archive.write_out(path, verbose=False)
    return path
