"""Named random streams: every consumer of randomness draws from its own.

One user seed S feeds many consumers: the order of the training set, its
dynamic binarization, the labelled subset of M2 and its binarization, the
M1 features' posterior draws, the model's posterior draws, the evaluation's
ELBO and importance-sampling draws. Handing S itself to two of them makes
their noise identical (M1+M2's feature noise once was a Box-Muller transform
of the uniforms that binarized the same batch). Each consumer therefore
derives its seed from (S, purpose) here, and no module seeds TF or numpy
randomness from S directly:

    dataset.shuffle(n, seed=streams.derive(seed, "shuffle"))
    pairs = streams.seed_pairs(seed, "binarize")        # one [2] seed per batch
    seed_is = streams.fold(seed_pair, "importance")     # in graph

`derive` hashes (purpose, S) with numpy's `SeedSequence`, so distinct
purposes give unrelated 31-bit seeds; `fold` is TF's stateless fold-in of a
fixed per-purpose constant.
"""

import numpy as np
import tensorflow as tf

PURPOSES = ("shuffle", "binarize", "labelled_choice", "labelled_shuffle", "labelled_binarize",
            "m1_features", "m1_labelled_features", "evaluation", "elbo", "importance")
"""Every stream's name; the index is part of the hash, so append, never reorder."""


def _code(purpose):
    if purpose not in PURPOSES:
        raise ValueError(f"`purpose` must be one of {', '.join(PURPOSES)}. "
                         f"Received: purpose={purpose!r}")
    return PURPOSES.index(purpose)


def derive(seed, purpose):
    """The int seed in [0, 2^31 - 1) of stream `purpose` under the user seed `seed`.

    Args:
      seed: the user's int seed (>= 0).
      purpose: one of `PURPOSES`.

    Returns:
      A Python int, for `tf.data` ops and `np.random.default_rng`.
    """
    state = np.random.SeedSequence([_code(purpose), int(seed)]).generate_state(1, np.uint32)
    return int(state[0] % (2 ** 31 - 1))


def seed_pairs(seed, purpose, rerandomize_each_iteration=True):
    """An endless `tf.data.Dataset` of stateless seeds int64 [2], one per element.

    Args:
      seed: the user's int seed.
      purpose: one of `PURPOSES`.
      rerandomize_each_iteration: new pairs on every iteration (epoch) of
        the dataset, the same sequence of epochs for the same seed.
    """
    return tf.data.Dataset.random(
        seed=derive(seed, purpose),
        rerandomize_each_iteration=rerandomize_each_iteration).batch(2)


def fold(seed, purpose):
    """The stateless seed [2] of stream `purpose` under the stateless seed `seed` [2]."""
    return tf.random.experimental.stateless_fold_in(seed, 1_000_003 + _code(purpose))
