"""What the models' serving signatures share: batch-only calls with a fixed seed.

A TF Serving client in the row format ({"instances": [...]}) can only send
inputs that all have one batch dimension: no seed [2], no scalar K or count.
The batch-only signatures (`elbo(x)`, `log_prob(x)`, `sample(index)`, ...)
therefore fix the seed (`SERVING_SEED`) and K (at export), and evaluate each
example on its own, as a batch of one with that seed: a row's answer depends
on that row alone, not on the batch it arrived in (so TF Serving's request
batching, or splitting a request in two, cannot change it), and the same
request always gets the same answer. The seeded signatures (`elbo_seeded`, ...)
keep the explicit seed and K for research use.
"""

import tensorflow as tf

# The stateless seed of every batch-only signature: row i of `elbo(x)` equals
# `elbo_seeded(x[i:i+1], seed=SERVING_SEED)`.
SERVING_SEED = (0, 0)
# K of a batch-only `log_prob(x)` unless the export fixes another
# (`TrainConfig.export_log_prob_samples`).
DEFAULT_LOG_PROB_SAMPLES = 100


def fixed_seed():
    """`SERVING_SEED` as an int32 [2] tensor."""
    return tf.constant(SERVING_SEED, tf.int32)


def index_seed(index):
    """The seed of sample number `index` (an int32 scalar) of the fixed stream:
    `SERVING_SEED` folded with `index`."""
    return tf.random.experimental.stateless_fold_in(fixed_seed(), index)


def per_example(fn, *batches, shape=(), dtype=tf.float32):
    """Calls `fn` on each example of `batches` as a batch of one; stacks the answers.

    The batches should already be checked (an empty batch maps to an empty
    answer without calling `fn`, so `fn`'s own checks would not run).

    Args:
      fn: callable(*batches of one example [1, ...]) -> tensor [1, ...].
      *batches: tensors [B, ...] with the same B.
      shape: shape of `fn`'s answer for one example (without the batch of one).
      dtype: its dtype.

    Returns:
      fn's answers [B, ...].
    """
    def one(rows):
        return fn(*[row[tf.newaxis] for row in rows])[0]
    return tf.map_fn(one, tuple(batches), fn_output_signature=tf.TensorSpec(shape, dtype))


def indexed_samples(sample_fn, shape, index, *batches):
    """Samples number `index` [n] of the fixed stream, one per row.

    Args:
      sample_fn: callable(seed int32 [2], *batches of one [1, ...]) -> one
        sample [1, ...] (the model's `sample` with `num_samples=1`, or with
        one label).
      shape: shape of one sample (e.g. the image shape).
      index: int32 [n], which samples of the stream (the same index gives the
        same sample).
      *batches: further per-row inputs [n, ...] (labels, temperatures).

    Returns:
      The samples [n, ...].
    """
    return per_example(lambda i, *rows: sample_fn(index_seed(i[0]), *rows), index, *batches,
                       shape=shape)
