"""Semi-supervised batches: a class-balanced labelled subset zipped with the unlabelled stream.

For M2 (Kingma et al. 2014; book §4.5.1) every training step sees a
labelled batch and an unlabelled batch. The labelled subset holds
`num_labels` training examples, the same number per class, chosen by a seed
(fixed across runs and epochs); it is repeated and reshuffled endlessly and
zipped with the full training stream (labels unused), which sets the epoch
length. Example:

    for batch in semi_supervised_dataset(unlabelled, "fashion_mnist", 100, 128, seed=0):
        batch["labelled"]["image"], batch["labelled"]["label"], batch["unlabelled"]["image"]
"""

import numpy as np
import tensorflow as tf

from tfvae.data import datasets as data_lib
from tfvae import streams
from tfvae import validation


def balanced_indices(labels, num_labels, num_classes, seed):
    """Indices of `num_labels` examples, num_labels / num_classes of each class.

    Args:
      labels: int array [N].
      num_labels: total labelled examples, a multiple of `num_classes`.
      num_classes: K.
      seed: int seed of the choice.

    Returns:
      Sorted int64 indices [num_labels].

    Raises:
      ValueError: num_labels is not a positive multiple of K, or a class has
        too few examples.
    """
    if (not isinstance(num_labels, (int, np.integer)) or num_labels <= 0
            or num_labels % num_classes):
        raise ValueError(f"`num_labels` must be a positive multiple of the {num_classes} classes. "
                         f"Received: num_labels={num_labels!r}")
    rng = np.random.default_rng(seed)
    per_class = num_labels // num_classes
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(np.asarray(labels) == c)
        if len(members) < per_class:
            raise ValueError(f"Class {c} has {len(members)} training examples, fewer than the "
                             f"{per_class} needed. Received: num_labels={num_labels}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def labelled_dataset(name, num_labels, batch_size, *, seed=0, binarize="dynamic",
                     data_dir=None, download=True, max_examples=None, epoch=None):
    """An endless pipeline of labelled batches from a class-balanced training subset.

    Args:
      name: a labelled dataset of `tfvae.data.datasets.DATASETS`.
      num_labels: size of the labelled subset (a multiple of the classes).
      batch_size: labelled examples per batch (may exceed num_labels).
      seed: seeds the subset choice, the order and the binarization.
      binarize: "none", "dynamic" (a fresh Bernoulli draw per batch) or "static".
      data_dir, download: as in `tfvae.data.datasets.make_dataset`.
      max_examples: choose among the first N training examples only.
      epoch: None, or the epoch whose order and binarization this is (a
        function of (seed, epoch); see `tfvae.data.datasets.make_dataset`).
        The subset itself depends on `seed` alone.

    Returns:
      An infinite `tf.data.Dataset` of {"image": float32 [B, H, W, C] in [0, 1],
      "label": int32 [B]}.
    """
    validation.one_of("binarize", binarize, data_lib.BINARIZE)
    info = data_lib.info(name)
    if info.num_classes < 2:
        raise ValueError(f"`{name}` has no labels. Received: name={name!r}")
    images, labels = data_lib.load_arrays(name, "train", data_dir=data_dir, download=download)
    images, labels = images[:max_examples], labels[:max_examples]
    index = balanced_indices(labels, num_labels, info.num_classes,
                             streams.derive(seed, "labelled_choice"))
    max_value = 2 ** info.num_bits - 1
    images, labels = images[index], labels[index].astype(np.int32)
    if binarize == "static":
        images, max_value = data_lib.binarize_once(
            images, max_value, streams.derive(seed, "labelled_binarize")), 1
    dataset = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    # Repeat before batching: every batch is full even when batch_size > num_labels.
    # Each repetition reshuffles, reproducibly from the (seed, epoch) shuffle seed.
    dataset = dataset.shuffle(len(index), seed=streams.derive(seed, "labelled_shuffle", epoch),
                              reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    draw_seeds = streams.seed_pairs(seed, "labelled_binarize", epoch)

    def to_float(batch, draw_seed):
        image = tf.cast(batch["image"], tf.float32) / max_value
        if binarize == "dynamic":  # x ~ Bernoulli(image), a fresh draw per batch.
            noise = tf.random.stateless_uniform(tf.shape(image), seed=draw_seed)
            image = tf.cast(noise < image, tf.float32)
        return {"image": image, "label": batch["label"]}

    return tf.data.Dataset.zip(dataset, draw_seeds).map(to_float, tf.data.AUTOTUNE)


def semi_supervised_dataset(unlabelled, labelled):
    """Zips the finite unlabelled stream with the endless labelled one.

    Returns:
      A dataset of {"labelled": labelled batch, "unlabelled": unlabelled batch};
      an epoch is one pass over `unlabelled`.
    """
    return tf.data.Dataset.zip({"labelled": labelled, "unlabelled": unlabelled}).prefetch(
        tf.data.AUTOTUNE)
