"""Hierarchical VAEs: oracles for the stack, the objective, the IS estimate and the guards."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.distributions import families
from tfvae.distributions import discretized
from tfvae.distributions import latents
from tfvae.nn import networks
from tfvae import streams
from tfvae.hierarchy import base
from tfvae.hierarchy import mlp
from tfvae.hierarchy import resnet
from tfvae.models import VAE
from tfvae.models import guarded_step
from tfvae.models import hvae
from tfvae.objectives.elbo import ELBO

tfd = tfp.distributions
SHAPE = (4, 4, 1)
RNG = np.random.default_rng(5)
X = (RNG.random((6, *SHAPE)) > 0.5).astype("float32")
SEED = tf.constant([3, 9])


def _model(inference="ladder", latent_sizes=(4, 2), iaf_steps=0, weight_norm=False, **kwargs):
    likelihood = families.Bernoulli(SHAPE)
    stack = mlp.MLPStack(SHAPE, latent_sizes, (16,) * len(latent_sizes), likelihood.params_size,
                         inference=inference, weight_norm=weight_norm, iaf_steps=iaf_steps,
                         iaf_hidden_units=(8,), iaf_context_size=4, seed=1, name="stack")
    model = hvae.HierarchicalVAE(stack, likelihood, seed=0, **kwargs)
    model(X[:1])
    return model


def _resnet_model(inference="bidirectional", iaf_steps=0, layers_per_resolution=None,
                  num_layers=None, **kwargs):
    """A ResNet VAE on X: 2x2 latents (1x1 in a second resolution group), initialized."""
    likelihood = families.Bernoulli(SHAPE)
    stack = resnet.ResNetStack(SHAPE, 1, num_layers=num_layers, hidden_channels=8,
                               latent_channels=2, inference=inference, iaf_steps=iaf_steps,
                               iaf_hidden_units=(8,), context_channels=4, seed=1,
                               layers_per_resolution=layers_per_resolution, name="stack")
    model = hvae.HierarchicalVAE(stack, likelihood, seed=0, **kwargs)
    model(X[:1])
    stack.infer(X, SEED, training=True)                     # data-dependent init
    return model


def test_ladder_merge_is_the_normalized_product_of_gaussians():
    loc_a, scale_a, loc_b, scale_b = 0.7, 0.3, -1.2, 1.1
    loc, scale = [float(t) for t in base.precision_weighted_merge(loc_a, scale_a, loc_b, scale_b)]
    grid = np.linspace(-3, 3, 7)
    log_product = tfd.Normal(loc_a, scale_a).log_prob(grid) + tfd.Normal(loc_b, scale_b).log_prob(grid)
    difference = log_product - tfd.Normal(loc, scale).log_prob(grid)
    np.testing.assert_allclose(difference, difference[0], atol=1e-4)  # proportional densities
    precision = 1 / scale_a ** 2 + 1 / scale_b ** 2                    # closed form
    assert scale == pytest.approx(precision ** -0.5, rel=1e-6)
    assert loc == pytest.approx((loc_a / scale_a ** 2 + loc_b / scale_b ** 2) / precision, rel=1e-6)


def test_ladder_posterior_is_the_merge_of_bottom_up_and_top_down():
    model = _model("ladder")
    stack = model.stack
    outputs, _ = stack.infer(X, SEED)
    # Recompute layer 1 (z_1) by hand from the sub-layers.
    d_1 = stack._up[0](X.reshape(6, -1))
    up_loc, up_log_scale, _ = stack._split_up(stack._up_heads[0](d_1), 0)
    p, _ = stack._prior(0, outputs[1].z, False)
    p_loc, p_scale = base.normal_parts(p)
    loc, scale = base.precision_weighted_merge(up_loc, tf.exp(up_log_scale), p_loc, p_scale)
    q_loc, q_scale = base.normal_parts(outputs[0].q)
    np.testing.assert_allclose(q_loc, loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_scale, scale, rtol=1e-5)
    # The analytic per-layer KL is KL(q_l || p_l) given the same upper sample.
    np.testing.assert_allclose(outputs[0].kl, tfd.kl_divergence(outputs[0].q, p), rtol=1e-5)


def test_one_layer_stack_reproduces_the_core_vae_elbo():
    likelihood = families.Bernoulli(SHAPE)
    vae = VAE(networks.MLP((16,), 16, activation="elu", output_activation="elu"),
              networks.MLP((16, 16), likelihood.params_size, activation="elu"),
              latents.LatentLayer(families.DiagonalGaussian(3)), likelihood, seed=0)
    vae(X[:1])
    model = _model("ladder", latent_sizes=(3,))
    stack = model.stack
    ours = [*stack._up[0]._stages, stack._up_heads[0], *stack._decoder._stages, stack._out]
    theirs = [*vae.encoder._hidden, vae.encoder._out, vae.latent._head, *vae.decoder._hidden,
              vae.decoder._out]
    for mine, other in zip(ours, theirs, strict=True):
        for w, v in zip(mine.weights, other.weights, strict=True):
            w.assign(v)
    seed = tf.constant([5, 6])
    # Same weights, same z: TFP draws MVNDiag and Normal noise in different
    # orders, so the z of the stack's pass (elbo's sample 0 uses fold_in(seed, 0))
    # is plugged into the core VAE's ELBO terms: log p(x|z) - KL(q(z|x) || p(z)).
    outputs, _ = stack.infer(X, tf.random.experimental.stateless_fold_in(seed, 0))
    q = vae.encode(X)
    np.testing.assert_allclose(base.normal_parts(outputs[0].q)[0], q.mean(), rtol=1e-6)
    expected = (vae.decode(outputs[0].z).log_prob(X)
                - tfd.kl_divergence(q, vae.latent.prior()))
    np.testing.assert_allclose(model.elbo(X, seed=seed), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(model.posterior_summary(X)["scale"], q.stddev(), rtol=1e-6)
    z = RNG.normal(size=(2, 3)).astype("float32")
    np.testing.assert_allclose(model.decode(z).mean(), vae.decode(z).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stack, inference, iaf_steps, layers_per_resolution", [
    ("mlp", "bottom_up", 0, None), ("mlp", "ladder", 0, None), ("mlp", "bidirectional", 1, None),
    ("resnet", "bottom_up", 0, None), ("resnet", "bottom_up", 0, (2, 1)),
    ("resnet", "ladder", 0, (2, 1)), ("resnet", "bidirectional", 1, None),
    ("resnet", "bidirectional", 1, (1, 2))])
def test_layer_kls_sum_to_the_rate_and_is_uses_the_joint(stack, inference, iaf_steps,
                                                         layers_per_resolution):
    if stack == "mlp":
        model = _model(inference, latent_sizes=(4, 3, 2), iaf_steps=iaf_steps)
    else:
        model = _resnet_model(inference, iaf_steps, layers_per_resolution,
                              num_layers=None if layers_per_resolution else 3)
    values = model.objective(X, SEED)
    layer_rates = [float(values[f"rate_{l}"]) for l in range(3)]
    assert float(values["rate"]) == pytest.approx(sum(layer_rates), rel=1e-5)
    assert float(values["elbo"]) == pytest.approx(
        -(float(values["distortion"]) + float(values["rate"])), rel=1e-6)
    # K = 1: the IS estimate is the single-sample log p(x, z_1..L) - log q(z_1..L|x).
    outputs, log_likelihood = model.layer_terms(
        tf.tile(X, [1, 1, 1, 1]),
        tf.random.experimental.stateless_fold_in(streams.fold(SEED, "importance"), 0),
        analytic=False)
    log_weight = log_likelihood - tf.add_n([o.kl for o in outputs])
    np.testing.assert_allclose(model.log_prob(X, num_samples=1, seed=SEED), log_weight,
                               rtol=1e-5)
    # Each MC kl_l is log q_l(z_l) - log p_l(z_l) at the layer's own sample.
    for o in outputs:
        np.testing.assert_allclose(o.kl, o.q.log_prob(o.z) - o.p.log_prob(o.z), rtol=1e-3,
                                   atol=1e-3)
    # The first K samples do not depend on the chunk size (an exported graph with a
    # tensor K runs masked chunks of 100): same estimate either way.
    np.testing.assert_allclose(model.log_prob(X, num_samples=tf.constant(3), chunk_size=8,
                                              seed=SEED),
                               model.log_prob(X, num_samples=3, seed=SEED), rtol=1e-6)
    # More importance samples: the estimate is above the ELBO on average.
    assert float(tf.reduce_mean(model.log_prob(X, num_samples=64, seed=SEED))) > float(
        tf.reduce_mean(model.elbo(X, num_samples=10, seed=SEED)))


@pytest.mark.parametrize("groups", [1, 2])
def test_free_bits_clamp_each_layer_and_group_exactly(groups):
    model = _model("ladder", latent_sizes=(4, 2),
                   objective=ELBO(free_bits=0.3, free_bits_groups=groups))
    values = model.objective(X, SEED)
    outputs, _ = model.layer_terms(X, SEED, analytic=model.training_objective.analytic_kl)
    expected_rate = 0.0
    for o in outputs:
        q_loc, q_scale = base.normal_parts(o.q)
        p_loc, p_scale = base.normal_parts(o.p)
        per_dim = tfd.kl_divergence(tfd.Normal(q_loc, q_scale), tfd.Normal(p_loc, p_scale)).numpy()
        per_group = per_dim.reshape(6, groups, -1).sum(-1).mean(0)        # batch mean per group
        expected_rate += np.maximum(0.3, per_group).sum()
    assert float(values["loss"]) == pytest.approx(float(values["distortion"]) + expected_rate,
                                                  rel=1e-5)
    huge = _model("ladder", latent_sizes=(4, 2),
                  objective=ELBO(free_bits=50.0, free_bits_groups=groups))
    values = huge.objective(X, SEED)
    assert float(values["loss"]) == pytest.approx(float(values["distortion"]) + 50.0 * 2 * groups,
                                                  rel=1e-6)


def test_kl_warmup_starts_at_zero_weight():
    model = _model("ladder", objective=ELBO(kl_warmup_steps=10))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    values = model.objective(X, SEED)
    assert float(values["beta"]) == 0.0
    assert float(values["loss"]) == pytest.approx(float(values["distortion"]), rel=1e-6)


def test_nan_gradient_is_skipped_and_large_norms_counted():
    w = tf.Variable([1.0, 2.0])
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([w])
    with tf.GradientTape() as tape:
        loss = tf.sqrt(w[0] - w[0]) + tf.reduce_sum(w)    # finite loss, NaN gradient
    assert np.isfinite(loss.numpy())
    applied, norm = guarded_step.minimize_if_finite(optimizer, tape, loss, [w])
    assert not bool(applied) and not np.isfinite(norm.numpy())
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    for threshold, applied in ((10.0, False), (1e4, True)):
        with tf.GradientTape() as tape:
            loss = 1000.0 * tf.reduce_sum(w)                # gradient norm 1414
        done, norm = guarded_step.minimize_if_finite(optimizer, tape, loss, [w],
                                                     max_grad_norm=threshold)
        assert bool(done) is applied
        np.testing.assert_allclose(norm, 1000.0 * np.sqrt(2.0), rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), [1.0 - 100.0, 2.0 - 100.0])


def test_training_skips_a_nan_batch_and_continues():
    model = _model("bidirectional", iaf_steps=1, weight_norm=True, max_grad_norm=1e6)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    model.train_step(tf.constant(X))                        # data-dependent init, one update
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_step(tf.constant(bad))
    assert float(logs["skipped_steps"]) == 1.0
    for v, old in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(v.numpy(), old)
    logs = model.train_step(tf.constant(X))
    assert float(logs["skipped_steps"]) == 1.0 and np.isfinite(float(logs["loss"]))
    assert any(not np.array_equal(v.numpy(), old)
               for v, old in zip(model.trainable_variables, before))
    tight = _model("ladder", max_grad_norm=1e-3)
    tight.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    assert float(tight.train_step(tf.constant(X))["skipped_steps"]) == 1.0


@pytest.mark.parametrize("inference, iaf_steps, downsample, layers_per_resolution, shapes", [
    ("bidirectional", 1, 2, None, [(4, 4, 3)] * 2),
    ("ladder", 0, 2, None, [(4, 4, 3)] * 2),
    ("bidirectional", 1, 1, (1, 1, 1), [(8, 8, 3), (4, 4, 3), (2, 2, 3)]),
    ("bottom_up", 0, 2, (1, 2), [(4, 4, 3), (2, 2, 3), (2, 2, 3)]),
])
def test_resnet_stack_shapes_sampling_and_keras_round_trip(tmp_path, inference, iaf_steps,
                                                           downsample, layers_per_resolution,
                                                           shapes):
    shape = (8, 8, 3)
    x = (RNG.integers(0, 256, size=(4, *shape)) / 255).astype("float32")
    likelihood = discretized.DiscretizedLogisticMixture(shape, num_components=2)
    stack = resnet.ResNetStack(shape, likelihood.params_size // 64, num_layers=len(shapes),
                               hidden_channels=8, latent_channels=3, inference=inference,
                               downsample=downsample, iaf_steps=iaf_steps, iaf_hidden_units=(8,),
                               context_channels=4, seed=2,
                               layers_per_resolution=layers_per_resolution, name="stack")
    assert stack.latent_shapes == shapes
    model = hvae.HierarchicalVAE(stack, likelihood, objective=ELBO(free_bits=0.1), seed=0)
    model(x[:1])
    model.compile(optimizer=keras.optimizers.Adamax(1e-3), jit_compile=False)
    model.train_step(tf.constant(x))                        # data-dependent init
    outputs, _ = stack.infer(x, SEED)
    assert [tuple(o.z.shape) for o in outputs] == [(4, *s) for s in shapes]
    values = model.objective(x, SEED)
    assert float(values["rate"]) == pytest.approx(
        sum(float(values[f"rate_{l}"]) for l in range(len(shapes))), rel=1e-5)
    assert model.sample(3, seed=[1, 2], temperature=0.5).shape == (3, *shape)
    summary = model.posterior_summary(x)
    size = sum(base.flat_size(s) for s in shapes)
    assert summary["loc"].shape == (4, size) == summary["scale"].shape
    assert model.decode(summary["loc"]).mean().shape == (4, *shape)
    path = os.path.join(tmp_path, f"{inference}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.stack.get_config() == stack.get_config()
    np.testing.assert_allclose(loaded.elbo(x, seed=SEED), model.elbo(x, seed=SEED), rtol=1e-5)
    np.testing.assert_allclose(loaded.decode(summary["loc"]).mean(),
                               model.decode(summary["loc"]).mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inference, iaf_steps, layers_per_resolution", [
    ("bottom_up", 0, None), ("bottom_up", 0, (1, 2)), ("ladder", 0, (2, 1)),
    ("bidirectional", 1, None), ("bidirectional", 1, (2, 1))])
def test_resnet_generation_from_posterior_latents_is_the_posterior_pass(inference, iaf_steps,
                                                                        layers_per_resolution):
    # Inference and generation share the top-down pass: fed the posterior's z_l,
    # `generate` gives the likelihood params of the posterior pass.
    model = _resnet_model(inference, iaf_steps, layers_per_resolution,
                          num_layers=None if layers_per_resolution else 3)
    outputs, params = model.stack.infer(X, SEED)
    np.testing.assert_allclose(
        model.stack.generate(6, tf.constant([0, 0]), latents=[o.z for o in outputs]), params,
        rtol=1e-5, atol=1e-6)
    # The same through the model's flat latents: decode(encode(x)) is the pass at the means.
    _, mean_params = model.stack.infer(X, SEED, mean=True)
    np.testing.assert_allclose(model.decode(model.encode(X)["loc"]).mean(),
                               model._params_to_likelihood(mean_params).mean(),
                               rtol=1e-5, atol=1e-6)


def test_resnet_bottom_up_posterior_conditions_on_the_sample_below():
    stack = _resnet_model("bottom_up", layers_per_resolution=(1, 2)).stack
    # `analytic` is ignored: q_l and p_l condition on different samples.
    outputs, params = stack.infer(X, SEED, analytic=True)
    act = keras.activations.get("elu")
    # q(z_1|x) on the stem features, q(z_l|z_{l-1}) on the sample below (stride 2 into 1x1).
    h = stack._stem(2.0 * X - 1.0)
    for l, o in enumerate(outputs):
        if l:
            h = stack._up_embed[l - 1](outputs[l - 1].z)
        loc, log_scale = np.split(stack._up_a[l](act(h)).numpy(), 2, axis=-1)
        q_loc, q_scale = base.normal_parts(o.q)
        np.testing.assert_allclose(q_loc, loc, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(q_scale, np.exp(log_scale), rtol=1e-5)
    # The priors by hand: the top-down pass of the module docstring on the posterior samples,
    # from the 1x1 constant, upsampled to 2x2 after z_2 (the first layer of the coarse group).
    s = tf.tile(stack.top, [6, 1, 1, 1])
    for l in (2, 1, 0):
        z = outputs[l].z
        hid, p_loc, p_log_scale = tf.split(stack._down_c[l](act(s)), [8, 2, 2], axis=-1)
        log_q = tfd.Normal(*base.normal_parts(outputs[l].q)).log_prob(z)
        log_p = tfd.Normal(p_loc, tf.exp(p_log_scale)).log_prob(z)
        np.testing.assert_allclose(outputs[l].kl, tf.reduce_sum(log_q - log_p, axis=[1, 2, 3]),
                                   rtol=1e-4, atol=1e-4)
        s = s + 0.1 * stack._down_d[l](act(tf.concat([hid, z], -1)))
        if l == 1:
            grow = tf.nn.depth_to_space(stack._down_grow[0](act(s)), 2)
            s = tf.repeat(tf.repeat(s, 2, axis=1), 2, axis=2) + 0.1 * grow
    expected = tf.reshape(tf.nn.depth_to_space(stack._out(act(s)), 2), [6, -1])
    np.testing.assert_allclose(params, expected, rtol=1e-5, atol=1e-6)


def test_resnet_single_resolution_is_the_default_layout():
    shape = (8, 8, 3)
    x = (RNG.integers(0, 256, size=(4, *shape)) / 255).astype("float32")
    common = dict(hidden_channels=8, latent_channels=3, iaf_steps=1, iaf_hidden_units=(8,),
                  context_channels=4, seed=2, name="stack")
    results = []
    for layout in (dict(num_layers=3), dict(num_layers=3, layers_per_resolution=(3,)),
                   dict(layers_per_resolution=[3])):
        keras.utils.set_random_seed(0)
        stack = resnet.ResNetStack(shape, 4, **layout, **common)
        stack.build(x.shape)
        stack.infer(x, SEED, training=True)                 # data-dependent init
        outputs, params = stack.infer(x, SEED)
        results.append((stack, [o.kl for o in outputs], params,
                        stack.generate(2, tf.constant([4, 5]))))
    (reference, kls, params, samples), *others = results
    for stack, other_kls, other_params, other_samples in others:
        assert stack.get_config() == reference.get_config()
        assert [w.path for w in stack.weights] == [w.path for w in reference.weights]
        for w, v in zip(stack.weights, reference.weights, strict=True):
            np.testing.assert_array_equal(w.numpy(), v.numpy())
        np.testing.assert_array_equal(other_params, params)
        np.testing.assert_array_equal(other_kls, kls)
        np.testing.assert_array_equal(other_samples, samples)
    # A config saved before `layers_per_resolution` existed loads as one resolution.
    config = reference.get_config()
    del config["layers_per_resolution"]
    old = resnet.ResNetStack.from_config(config)
    old.build(x.shape)
    old.set_weights(reference.get_weights())
    assert old.latent_shapes == [(4, 4, 3)] * 3 and old.layers_per_resolution == (3,)
    np.testing.assert_array_equal(old.infer(x, SEED)[1], params)


@pytest.mark.parametrize("kwargs, message", [
    (dict(layers_per_resolution=(2, 0)), "`layers_per_resolution` must be"),
    (dict(layers_per_resolution=()), "`layers_per_resolution` must be"),
    (dict(num_layers=4, layers_per_resolution=(2, 1)), "`num_layers` must be"),
    (dict(layers_per_resolution=(1, 1, 1, 1)), "`layers_per_resolution` has 4 resolutions"),
    (dict(inference="bottom_up", iaf_steps=1), "inference='bidirectional'"),
    (dict(inference="sideways"), "`inference` must be"),
    (dict(downsample=3), "`downsample` must be"),
])
def test_resnet_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet.ResNetStack((8, 8, 3), 4, **kwargs)


def test_resnet_vae_config_checks_resolutions_and_inference():
    from zoo import resnet_vae

    with pytest.raises(ValueError, match="layers_per_resolution"):
        resnet_vae.Config(layers_per_resolution=(10, 5))           # 15 != num_layers 20
    with pytest.raises(ValueError, match="layers_per_resolution"):
        resnet_vae.Config(num_layers=2, layers_per_resolution=(2, 0))
    with pytest.raises(ValueError, match="iaf_steps"):
        resnet_vae.Config(inference="bottom_up")                   # the paper preset has an IAF
    assert resnet_vae.Config(layers_per_resolution=(10, 10)).num_layers == 20
    info = types.SimpleNamespace(image_shape=(32, 32, 3), num_bits=8)
    config = resnet_vae.SmallConfig(num_layers=3, layers_per_resolution=(2, 1),
                                    inference="bottom_up", iaf_steps=0)
    stack = resnet_vae.build_model(config, info).stack
    assert stack.inference == "bottom_up"
    assert stack.latent_shapes == [(16, 16, 8), (16, 16, 8), (8, 8, 8)]
    small = resnet_vae.build_model(resnet_vae.SmallConfig(), info).stack
    assert small.layers_per_resolution == (2,) and small.latent_shapes == [(16, 16, 8)] * 2


def test_mlp_model_keras_round_trip_with_iaf_and_weight_norm(tmp_path):
    model = _model("bidirectional", iaf_steps=1, weight_norm=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    model.train_step(tf.constant(X))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.stack.get_config() == model.stack.get_config()
    np.testing.assert_allclose(loaded.log_prob(X, num_samples=5, seed=SEED),
                               model.log_prob(X, num_samples=5, seed=SEED), rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(inference="sideways"), "inference"),
    (dict(inference="ladder", iaf_steps=1), "bidirectional"),
    (dict(inference="bidirectional", iaf_steps=1, objective=ELBO(free_bits_groups=2)),
     "splits over latent dimensions.*Received: free_bits_groups=2"),
    (dict(objective=ELBO(free_bits_groups=3)), "must divide.*Received: free_bits_groups=3"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
])
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)


def test_free_bits_groups_use_the_layer_estimator_under_bottom_up_inference():
    """Hand-set linear stack: q(z1|x) = N(0, 1), q(z2|z1) = N(z1, 0.5^2), p(z1|z2) = N(z2, 1).

    The bottom-up layer term E[log q(z1) - log p(z1|z2)] is -0.375 per dimension; the
    per-dimension closed form KL(q(z1) || p(z1|z2)) averages (1 + 0.25) / 2 = +0.625 and is
    biased here, since z2 was drawn from a q that depends on z1.
    """
    n = 200_000
    z1 = tfd.Normal(0.0, 1.0).sample([n, 2], seed=tf.constant([1, 2]))
    z2 = tfd.Normal(z1, 0.5).sample(seed=tf.constant([3, 4]))
    q = tfd.Independent(tfd.Normal(tf.zeros([n, 2]), 1.0), 1)
    p = tfd.Independent(tfd.Normal(z2, 1.0), 1)
    output = base.layer_output(z1, q, p, analytic=False)
    groups = base.kl_groups(output, 2)                                    # [n, 2]
    np.testing.assert_allclose(tf.reduce_sum(groups, -1), output.kl, atol=1e-5)
    np.testing.assert_allclose(tf.reduce_mean(groups, 0), [-0.375, -0.375], atol=0.01)


@pytest.mark.parametrize("stack", ["mlp", "resnet"])
@pytest.mark.parametrize("inference", ["bottom_up", "ladder", "bidirectional"])
def test_vanishing_free_bits_loss_is_the_negative_elbo(stack, inference):
    """Free bits -> 0 with two groups per layer: groups sum to the layer's KL term, and the
    loss is -ELBO except where a group's minibatch mean is below lambda (then it is clamped):
    loss + elbo = sum_j max(0, lambda - m_j), m_j the batch mean of group j.
    """
    make = _model if stack == "mlp" else _resnet_model
    free_bits = 1e-6
    model = make(inference, objective=ELBO(free_bits=free_bits, free_bits_groups=2))
    x = tf.constant(X)
    values = model.objective(x, SEED)
    outputs, _ = model.layer_terms(x, SEED, analytic=model.training_objective.analytic_kl)
    means = []
    for output in outputs:
        groups = base.kl_groups(output, 2)                                # [N, 2]
        np.testing.assert_allclose(tf.reduce_sum(groups, -1), output.kl, rtol=1e-5, atol=1e-5)
        means.extend(np.mean(groups, axis=0))
    clamped = sum(max(0.0, free_bits - m) for m in means)
    np.testing.assert_allclose(float(values["loss"]) + float(values["elbo"]), clamped,
                               rtol=1e-4, atol=1e-4)
    if inference != "bottom_up":                 # analytic KLs: every group mean is >= 0
        np.testing.assert_allclose(float(values["loss"]), -float(values["elbo"]), rtol=1e-6,
                                   atol=1e-4)
