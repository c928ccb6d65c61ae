"""`image_patches`: 32x32x3 8-bit patches of scikit-learn's two sample photographs.

An offline stand-in for CIFAR-10-sized natural images (for bits/dim of the
ResNet VAE on a machine without the CIFAR-10 files). The photographs
`china.jpg` and `flower.jpg` (427 x 640 x 3 each) ship with scikit-learn
(`sklearn.datasets.load_sample_images`). Each photograph is cut into three
vertical strips of whole columns, so no pixel is shared between splits:

    train       columns [0, 384)    patches every 8 pixels  (50 x 45 per image)
    validation  columns [384, 480)  patches every 16 pixels (25 x 5 per image)
    test        columns [480, 640)  patches every 16 pixels (25 x 9 per image)

Patches are listed image by image (china, then flower), row-major by
top-left corner: 4500 / 250 / 450 patches. There are no labels (-1).
Neighbouring training patches overlap (stride 8 < 32); held-out patches
overlap each other too but never the training strip.
"""

import functools

import numpy as np

PATCH = 32
SPLIT_COLUMNS = {"train": (0, 384), "validation": (384, 480), "test": (480, 640)}
STRIDES = {"train": 8, "validation": 16, "test": 16}
IMAGE_NAMES = ("china.jpg", "flower.jpg")


def cut(image, columns, stride):
    """Patches [n, 32, 32, C] of `image` [H, W, C] inside `columns` = (start, stop)."""
    start, stop = columns
    region = image[:, start:stop]
    rows = range(0, region.shape[0] - PATCH + 1, stride)
    cols = range(0, region.shape[1] - PATCH + 1, stride)
    return np.stack([region[r:r + PATCH, c:c + PATCH] for r in rows for c in cols])


@functools.lru_cache(maxsize=1)
def load():
    """Returns {split: (uint8 images [n, 32, 32, 3], int64 labels [n] of -1)}, read-only."""
    try:
        # Imported lazily: scikit-learn is an optional dependency.
        from sklearn import datasets as sklearn_datasets  # pylint: disable=C0415
    except ImportError as error:
        raise ValueError("Dataset 'image_patches' needs scikit-learn: "
                         "pip install scikit-learn") from error
    bunch = sklearn_datasets.load_sample_images()
    by_name = {path.replace("\\", "/").rsplit("/", 1)[-1]: image
               for path, image in zip(bunch.filenames, bunch.images)}
    splits = {}
    for split, columns in SPLIT_COLUMNS.items():
        images = np.concatenate([cut(by_name[name], columns, STRIDES[split])
                                 for name in IMAGE_NAMES]).astype(np.uint8)
        labels = np.full(len(images), -1, np.int64)
        images.flags.writeable = labels.flags.writeable = False
        splits[split] = (images, labels)
    return splits
