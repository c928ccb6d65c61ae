"""M2: y summed out exactly (by hand and against the linear-Gaussian oracle), the classifier learns."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from tests import linear_gaussian as lg
from tests import test_cvae
from tfvae.data import datasets as data_lib
from tfvae.distributions import families
from tfvae.data import labelled as labelled_data
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae.models import m2
from tfvae.objectives.semi_supervised import SemiSupervisedBound
from zoo import m2 as m2_entry

K = test_cvae.NUM_CLASSES


def _tiny_m2(alpha=2.0):
    model = m2.M2(networks.MLP([8], 8), networks.MLP([8], 16),
                  latents.LatentLayer(families.DiagonalGaussian(3)),
                  families.Bernoulli((4, 4, 1)), classifier=networks.MLP([8], K),
                  num_classes=K, objective=SemiSupervisedBound(alpha), seed=0)
    model.build((None, 4, 4, 1))
    return model


def test_unlabelled_bound_is_the_label_marginalized_expression_by_hand():
    model = _tiny_m2()
    rng = np.random.default_rng(0)
    x = tf.constant((rng.random((5, 4, 4, 1)) < 0.5).astype("float32"))
    seed = tf.constant([3, 4])
    eps = tf.random.stateless_normal([5, 3], seed)
    # L(x, y) for each class, one call per class with the same noise.
    bounds = np.stack([model.labelled_bound(x, tf.fill([5], c), eps)["bound"].numpy()
                       for c in range(K)], axis=1)                            # [5, K]
    log_q = special.log_softmax(model.classifier(x).numpy(), axis=-1)
    q = np.exp(log_q)
    by_hand = (q * bounds).sum(1) - (q * log_q).sum(1)
    np.testing.assert_allclose(model.unlabelled_terms(x, seed)["bound"].numpy(), by_hand,
                               rtol=1e-5)
    np.testing.assert_allclose(model.class_bounds(x, seed)["bound"].numpy(), bounds, rtol=1e-5)
    # L(x, y) itself: log p(x|y, z) + log p(y) - KL(q(z|x, y) || p(z)) at z = mu + sigma eps.
    q_z = model.encode(x, tf.fill([5], 1))
    z = q_z.mean() + q_z.stddev() * eps
    expected = (model.decode(z, tf.fill([5], 1)).log_prob(x) - math.log(K)
                - q_z.kl_divergence(model.prior())).numpy()
    np.testing.assert_allclose(bounds[:, 1], expected, rtol=1e-5)


def test_loss_combines_labelled_unlabelled_and_classification_terms():
    model = _tiny_m2(alpha=2.0)
    rng = np.random.default_rng(1)
    x_l = tf.constant((rng.random((4, 4, 4, 1)) < 0.5).astype("float32"))
    y_l = tf.constant([0, 1, 2, 1], tf.int32)
    x_u = tf.constant((rng.random((6, 4, 4, 1)) < 0.5).astype("float32"))
    seed = tf.constant([5, 6])
    out = model.objective({"labelled": (x_l, y_l), "unlabelled": x_u}, seed)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    labelled = model.labelled_bound(x_l, y_l, tf.random.stateless_normal([4, 3], seeds[0]))
    unlabelled = model.unlabelled_terms(x_u, seeds[1])["bound"]
    log_q = special.log_softmax(model.classifier(x_l).numpy(), axis=-1)
    cross_entropy = -log_q[range(4), y_l.numpy()].mean()
    expected = -labelled["bound"].numpy().mean() - unlabelled.numpy().mean() + 2.0 * cross_entropy
    np.testing.assert_allclose(float(out["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out["elbo"]), unlabelled.numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(float(out["elbo"]), -float(out["rate"] + out["distortion"]),
                               rtol=1e-5)


def _diagonal_problem():
    """The conditional linear-Gaussian problem with orthogonal columns of W (diagonal posterior)."""
    weight, label_weight, bias, x, y = test_cvae.conditional_problem()
    q, _ = np.linalg.qr(weight)
    weight = q * np.array([2.0, 0.7])
    return weight, label_weight, bias, x, y


def test_exact_posterior_oracle_for_log_prob_and_the_unlabelled_bound():
    weight, label_weight, bias, x, _ = _diagonal_problem()
    model = m2.M2(networks.MLP([], lg.X_DIM), networks.MLP([], lg.X_DIM),
                  latents.LatentLayer(families.DiagonalGaussian(lg.Z_DIM)),
                  families.Gaussian((lg.X_DIM, 1, 1), scale=lg.SIGMA),
                  classifier=networks.MLP([], K), num_classes=K, seed=0)
    model.build((None, lg.X_DIM, 1, 1))
    test_cvae.set_exact_weights(model, weight, label_weight, bias,
                                families.DiagonalGaussian(lg.Z_DIM))
    images = x[:, :, None, None].astype("float32")
    log_p_xy = np.stack([test_cvae.exact_log_prob_given_label(
        weight, label_weight, bias, x, np.full(8, c)) for c in range(K)], 1) - math.log(K)
    log_p_x = special.logsumexp(log_p_xy, axis=1)
    # Exact posteriors q(z|x, y): the IS estimate with y summed out is exact for any K.
    np.testing.assert_allclose(model.log_prob(images, num_samples=5, seed=[1, 2]).numpy(),
                               log_p_x, rtol=1e-4, atol=1e-4)
    # U(x) = log p(x) - KL(q(y|x) || p(y|x)) in expectation over z.
    log_q = special.log_softmax(model.classifier(images).numpy(), axis=-1)
    kl_y = (np.exp(log_q) * (log_q - (log_p_xy - log_p_x[:, None]))).sum(1)
    elbo = model.elbo(images, num_samples=3000, seed=[3, 4]).numpy()
    np.testing.assert_allclose(elbo, log_p_x - kl_y, atol=0.1)


def test_balanced_labelled_subset_is_fixed_by_the_seed():
    labels = np.repeat(np.arange(4), 30)
    first = labelled_data.balanced_indices(labels, 20, 4, seed=7)
    np.testing.assert_array_equal(np.bincount(labels[first]), [5, 5, 5, 5])
    np.testing.assert_array_equal(first, labelled_data.balanced_indices(labels, 20, 4, seed=7))
    assert not np.array_equal(first, labelled_data.balanced_indices(labels, 20, 4, seed=8))
    with pytest.raises(ValueError, match="num_labels"):
        labelled_data.balanced_indices(labels, 21, 4, seed=0)


def test_classifier_beats_chance_on_digits_with_100_labels():
    config = m2_entry.Config(dataset="digits", num_labels=100, latent_size=8,
                             hidden_units=(64,), batch_size=64)
    train_ds, _, test_ds = config.datasets()
    batch = next(iter(train_ds))
    assert batch["labelled"]["image"].shape == (64, 8, 8, 1)
    model = m2_entry.build_model(config, data_lib.info("digits"))
    assert model.training_objective.alpha == pytest.approx(0.1 * 1297 / 100)        # Kingma et al.'s alpha = 0.1 N
    model(batch["unlabelled"]["image"])
    # Without XLA: compiling the K-fold tiled step costs more than 200 small steps here.
    model.compile(optimizer="adam", jit_compile=False, steps_per_execution=20)
    model.fit(train_ds, epochs=10, verbose=0)                      # 200 steps
    batches = list(test_ds)
    probs = model.classify(tf.concat([b["image"] for b in batches], 0)).numpy()
    labels = np.concatenate([b["label"].numpy() for b in batches])
    accuracy = np.mean(probs.argmax(-1) == labels)
    assert accuracy > 0.6, accuracy                                # chance is 0.1 on ten classes


@pytest.fixture(scope="module")
def m1_workdir(tmp_path_factory):
    """A small M1 (an unsupervised `zoo.vae`) trained on digits."""
    from tfvae.training import train
    from zoo import vae as vae_entry
    workdir = str(tmp_path_factory.mktemp("m1"))
    config = vae_entry.Config(dataset="digits", latent_size=6, hidden_units=(64,), epochs=40,
                              batch_size=64, export=False, image_summaries=False,
                              jit_compile=False, eval_num_samples=10)
    train.run(config, vae_entry.build_model, workdir)
    return workdir


def test_m1_features_are_posterior_draws_for_training_and_means_held_out(m1_workdir):
    from zoo import m1_features
    from tfvae.training import train
    config = m2_entry.Config(dataset="digits", num_labels=100, batch_size=64,
                             m1_workdir=m1_workdir)
    config.validate()
    config.check_inputs()             # the M1 workdir matches (dataset, binarization)
    assert config.dataset_info().image_shape == (1, 1, 6)
    m1 = config.m1()
    train_ds, _, test_ds = config.datasets()
    # Held out: the posterior mean, the same in every pass.
    raw = next(iter(data_lib.make_dataset("digits", "test", 64, binarize="static",
                                          seed=train.EVAL_BINARIZE_SEED)))
    held_out = next(iter(test_ds))
    np.testing.assert_array_equal(held_out["label"], raw["label"])
    expected = m1.posterior_summary(raw["image"])["loc"].numpy()
    np.testing.assert_allclose(held_out["image"].numpy().reshape(64, 6), expected, atol=1e-5)
    np.testing.assert_array_equal(next(iter(test_ds))["image"], held_out["image"])
    # Training: draws z ~ q(z|x), standardized by q's moments N(0, 1); every epoch draws again.
    x = tf.repeat(raw["image"][:4], 500, axis=0)
    q = m1.posterior_summary(x)
    z = m1_features.features(m1, x, sample=True, seed=tf.constant([1, 2])).numpy().reshape(-1, 6)
    noise = (z - q["loc"].numpy()) / q["scale"].numpy()
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
    assert next(iter(train_ds))["unlabelled"]["image"].shape == (64, 1, 1, 6)
    # The same images in two epochs: two different draws around the same mean.
    fixed = tf.data.Dataset.from_tensors({"image": raw["image"], "label": raw["label"]})
    sampled = m1_features.to_features(fixed, m1, sample=True, seed=3)
    first, second = (next(iter(sampled))["image"].numpy().reshape(64, 6) for _ in range(2))
    assert not np.allclose(first, second)
    scale = m1.posterior_summary(raw["image"])["scale"].numpy()
    for draw in (first, second):
        assert np.abs((draw - expected) / scale).max() < 6.0       # draws of q, not of another law
    with pytest.raises(ValueError, match="m1_workdir"):
        m1_features.load_m1(str(m1_workdir) + "_missing")


def test_m1_plus_m2_trains_and_classifies_digits(m1_workdir, tmp_path):
    from tfvae.training import train
    config = m2_entry.Config(dataset="digits", num_labels=100, latent_size=4, hidden_units=(64,),
                             batch_size=64, epochs=20, jit_compile=False, eval_num_samples=5,
                             steps_per_execution=5, m1_workdir=m1_workdir)
    metrics = train.run(config, m2_entry.build_model, str(tmp_path))
    # Chance is 0.1; with features of an M1 that had collapsed (rate 1.4 nats) it stayed at 0.09.
    # Runs of this setting ended between 0.46 and 0.68 (the best-ELBO epoch is restored, and
    # the run is not bit-reproducible across processes: see the Reliability issue).
    assert metrics["test_accuracy"] > 0.4, metrics["test_accuracy"]
    from zoo import workdirs
    _, dataset = workdirs.workdir_dataset(str(tmp_path))
    assert next(iter(dataset))["image"].shape[1:] == (1, 1, 6)


@pytest.mark.parametrize("field, value", [("dataset", "fashion_mnist"), ("binarize", "none")])
def test_m1_of_another_dataset_or_binarization_is_refused(m1_workdir, field, value):
    with pytest.raises(ValueError, match=field):
        m2_entry.Config(**{"dataset": "digits", "m1_workdir": m1_workdir, field: value}).check_inputs()


def test_held_out_accuracy_is_per_example_with_a_smaller_last_batch():
    model = _tiny_m2()
    model.compile(optimizer="adam", jit_compile=False)
    rng = np.random.default_rng(3)
    x = (rng.random((10, 4, 4, 1)) < 0.5).astype("float32")
    labels = rng.integers(0, K, 10).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices({"image": x, "label": labels}).batch(4)  # 4, 4, 2
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    correct = model.classify(tf.constant(x)).numpy().argmax(-1) == labels
    # A per-batch average would give (acc_1 + acc_2 + acc_3) / 3 instead.
    assert logs["accuracy"] == pytest.approx(correct.mean(), abs=1e-6)
