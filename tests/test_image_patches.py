"""`image_patches`: disjoint column strips per split, shapes, dtype, determinism, pipeline."""

import numpy as np
import pytest

from tfvae.data import datasets as data
from tfvae.data import image_patches

pytest.importorskip("sklearn")


def test_split_regions_are_disjoint_whole_columns():
    spans = sorted(image_patches.SPLIT_COLUMNS.values())
    assert spans[0][0] == 0 and spans[-1][1] == 640
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        assert stop == start                  # adjacent strips, no shared column


def test_no_patch_of_a_held_out_split_appears_in_train():
    train, _ = data.load_arrays("image_patches", "train")
    train_keys = {p.tobytes() for p in train}
    for split in ("validation", "test"):
        images, _ = data.load_arrays("image_patches", split)
        assert not any(p.tobytes() in train_keys for p in images)


def test_shapes_dtype_info_and_labels():
    info = data.info("image_patches")
    assert info.image_shape == (32, 32, 3) and info.num_bits == 8 and info.num_classes == 0
    for split, size in info.splits.items():
        images, labels = data.load_arrays("image_patches", split)
        assert images.shape == (size, 32, 32, 3) and images.dtype == np.uint8
        assert labels.shape == (size,) and np.all(labels == -1)
        assert not images.flags.writeable
        assert images.std() > 10                     # real photographs, not blanks


def test_patches_are_cut_where_documented():
    from sklearn.datasets import load_sample_images  # pylint: disable=C0415
    china = load_sample_images().images[0]
    train, _ = data.load_arrays("image_patches", "train")
    test, _ = data.load_arrays("image_patches", "test")
    np.testing.assert_array_equal(train[0], china[:32, :32])
    np.testing.assert_array_equal(train[1], china[:32, 8:40])          # stride 8
    np.testing.assert_array_equal(test[0], china[:32, 480:512])
    np.testing.assert_array_equal(test[1], china[:32, 496:528])        # stride 16


def test_deterministic_and_pipeline_scales_to_unit_interval():
    image_patches.load.cache_clear()
    first = data.load_arrays("image_patches", "validation")[0].copy()
    image_patches.load.cache_clear()
    np.testing.assert_array_equal(first, data.load_arrays("image_patches", "validation")[0])
    batch = next(iter(data.make_dataset("image_patches", "validation", 16)))
    x = batch["image"].numpy()
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, first[:16], atol=1e-4)
