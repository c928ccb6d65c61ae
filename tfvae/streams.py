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

The training loop asks for one epoch at a time: `derive(S, purpose, epoch)`
and `seed_pairs(S, purpose, epoch)` are a function of (S, purpose, epoch)
alone, so epoch e of a resumed run sees exactly the data of epoch e of an
uninterrupted one (without `epoch`, a dataset reshuffles itself on every
iteration, from the same first epoch in every process).
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


def derive(seed, purpose, epoch=None):
    """The int seed in [0, 2^31 - 1) of stream `purpose` under the user seed `seed`.

    Args:
      seed: the user's int seed (>= 0).
      purpose: one of `PURPOSES`.
      epoch: the epoch (>= 0) whose seed this is, or None for the stream's seed.

    Returns:
      A Python int, for `tf.data` ops and `np.random.default_rng`.
    """
    entropy = [_code(purpose), int(seed)] + ([] if epoch is None else [int(epoch)])
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint32)
    return int(state[0] % (2 ** 31 - 1))


def seed_pairs(seed, purpose, epoch=None):
    """An endless `tf.data.Dataset` of stateless seeds int64 [2], one per element.

    Args:
      seed: the user's int seed.
      purpose: one of `PURPOSES`.
      epoch: the epoch whose pairs these are (the same on every iteration);
        None: new pairs on every iteration of the dataset, the same sequence
        of iterations for the same seed.
    """
    return tf.data.Dataset.random(
        seed=derive(seed, purpose, epoch),
        rerandomize_each_iteration=epoch is None).batch(2)


def fold(seed, purpose):
    """The stateless seed [2] of stream `purpose` under the stateless seed `seed` [2]."""
    return tf.random.experimental.stateless_fold_in(seed, 1_000_003 + _code(purpose))
