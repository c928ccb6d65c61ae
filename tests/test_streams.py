"""Random streams: no two consumers of randomness share a seed (`tfvae.streams`).

Binarization, shuffling, the labelled subset, M1 features, the model's
posterior draws and the evaluation's ELBO and IS draws each have their own
stream; over a few hundred batches and two epochs no seed pair repeats
across consumers. (Before, M1+M2's feature draws and the binarization of the
same batches came from one stream: equal seeds in 87 of 400 batches.)
"""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.evaluation import estimators as evaluation
from tfvae.distributions import families
from tfvae import streams
from tfvae.hierarchy import mlp
from tfvae.models import hvae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHES = 400


def _pairs(dataset, epochs=2):
    out = []
    for _ in range(epochs):
        out.extend(tuple(int(v) for v in pair) for pair in dataset.take(BATCHES).as_numpy_iterator())
    return out


def test_derived_seeds_differ_by_purpose_and_user_seed():
    seeds = {(s, p): streams.derive(s, p) for s in range(4) for p in streams.PURPOSES}
    assert len(set(seeds.values())) == len(seeds)
    assert all(0 <= v < 2 ** 31 - 1 for v in seeds.values())
    assert streams.derive(0, "binarize") == streams.derive(0, "binarize")   # reproducible
    with pytest.raises(ValueError, match="purpose"):
        streams.derive(0, "binarise")


def test_data_consumers_never_share_a_seed_pair():
    consumers = ("binarize", "labelled_binarize", "m1_features", "m1_labelled_features")
    drawn = {name: _pairs(streams.seed_pairs(0, name)) for name in consumers}
    for name, pairs in drawn.items():
        assert len(set(pairs)) == len(pairs), f"{name} repeats a seed within its stream"
        assert pairs[:BATCHES] != pairs[BATCHES:], f"{name} repeats its first epoch"
    names = list(drawn)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not set(drawn[a]) & set(drawn[b]), f"{a} and {b} share seeds"
    # M1 features reduce pairs mod 2^31 - 1 to int32: still disjoint from the binarization's.
    reduced = {tuple(v % (2 ** 31 - 1) for v in pair) for pair in drawn["m1_features"]}
    assert not reduced & {tuple(v % (2 ** 31 - 1) for v in p) for p in drawn["binarize"]}


def test_no_module_seeds_tf_data_randomness_outside_streams():
    """Every `Dataset.random` and seeded `shuffle` of the library and zoo goes through streams."""
    offenders = []
    for folder in ("tfvae", "zoo"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                path = os.path.join(dirpath, name)
                if not name.endswith(".py") or path.endswith(os.path.join("tfvae", "streams.py")):
                    continue
                source = open(path).read()
                if re.search(r"Dataset\.random\(|\.shuffle\([^)]*seed=seed\b", source):
                    offenders.append(os.path.relpath(path, ROOT))
    assert not offenders


def test_evaluation_draws_are_disjoint_from_each_other_and_from_training():
    """evaluate() hands the ELBO and the IS estimator seeds of their own streams."""
    seen = {"elbo": [], "importance": []}
    data = tf.data.Dataset.from_tensor_slices(np.zeros((BATCHES, 2), "float32")).batch(1)

    def recorder(name):
        def fn(batch, seed):
            seen[name].append(tuple(int(v) for v in seed))
            return tf.zeros([1])
        return fn

    evaluation.evaluate_functions(recorder("elbo"), recorder("importance"), data, 5)
    generator = keras.random.SeedGenerator(0)
    training = {tuple(int(v) for v in generator.next().numpy()) for _ in range(BATCHES)}
    elbo, importance = set(seen["elbo"]), set(seen["importance"])
    assert len(elbo) == len(importance) == BATCHES
    assert not elbo & importance and not (elbo | importance) & training


def test_hierarchical_elbo_and_is_draws_are_independent_for_one_seed():
    """With one seed, the single-sample ELBO and the K=1 IS estimate used to be the same draw."""
    shape = (4, 4, 1)
    x = (np.random.default_rng(0).random((6, *shape)) > 0.5).astype("float32")
    likelihood = families.Bernoulli(shape)
    stack = mlp.MLPStack(shape, (4, 2), (16, 16), likelihood.params_size,
                         inference="bottom_up", seed=1)
    model = hvae.HierarchicalVAE(stack, likelihood, seed=0)
    model(x[:1])
    seed = tf.constant([3, 9])
    elbo = model.elbo(x, seed=seed).numpy()
    single = model.log_prob(x, num_samples=1, seed=seed).numpy()
    # Both are single-sample log p(x, z) - log q(z|x) under bottom-up inference (MC KLs):
    # different draws differ in every example.
    assert np.all(np.abs(elbo - single) > 1e-4)
    np.testing.assert_allclose(model.log_prob(x, num_samples=1, seed=seed), single)
