"""Training objectives as objects (`tfvae.objectives`): serialization, old configs, refusals.

An objective's options live in the objective (never in the model): they must
survive a Keras config and a `.keras` file of the model that trains on it,
configs written when the options were model arguments (and IWAE, β-VAE and
β-TCVAE were `VAE` subclasses) must load as the `VAE` with the equivalent
objective, and an objective must refuse, naming it, an option it cannot
honour (at construction, or in `bind` against the model that takes it).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.distributions import families
from tfvae.distributions import latents
from tfvae.distributions import vamp
from tfvae.flows import planar
from tfvae.hierarchy import mlp
from tfvae.models import VAE
from tfvae.models import hvae
from tfvae.models import m2
from tfvae.models import vamp_vae
from tfvae.nn import networks
from tfvae.objectives import base
from tfvae.objectives.disentanglement import BetaTC
from tfvae.objectives.disentanglement import CapacityELBO
from tfvae.objectives.elbo import ELBO
from tfvae.objectives.importance_weighted import IWAEBound
from tfvae.objectives.semi_supervised import SemiSupervisedBound

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (4, 4, 1)
X = (np.random.default_rng(7).random((6, *SHAPE)) > 0.5).astype("float32")
SEED = tf.constant([3, 5])

# Every objective with every option away from its default.
OBJECTIVES = {
    "elbo": ELBO(beta=2.5, kl_warmup_steps=7, free_bits=0.3, free_bits_groups=2,
                 analytic_kl=False),
    "iwae": IWAEBound(k=3, m=2),
    "capacity": CapacityELBO(5.0, capacity_steps=1000, gamma=50.0, analytic_kl=False),
    "beta_tc": BetaTC(alpha=0.5, beta=3.0, gamma=2.0, dataset_size=123, estimator="mws",
                      analytic_kl=True),
    "semi_supervised": SemiSupervisedBound(alpha=0.7),
}
OPTIONS = {
    "elbo": dict(beta=2.5, kl_warmup_steps=7, free_bits=0.3, free_bits_groups=2,
                 analytic_kl=False),
    "iwae": dict(k=3, m=2, analytic_kl=False),
    "capacity": dict(capacity_max=5.0, capacity_steps=1000, gamma=50.0, analytic_kl=False),
    "beta_tc": dict(alpha=0.5, beta=3.0, gamma=2.0, dataset_size=123, estimator="mws",
                    analytic_kl=True),
    "semi_supervised": dict(alpha=0.7),
}


def _parts(family=None, flow=None, latent_size=4):
    likelihood = families.Bernoulli(SHAPE)
    latent = latents.LatentLayer(family or families.DiagonalGaussian(latent_size), flow=flow)
    return (networks.MLP([8], 8), networks.MLP([8], likelihood.params_size), latent, likelihood)


def _vae(objective=None, family=None, flow=None):
    model = VAE(*_parts(family, flow), objective=objective, seed=0)
    model.build((None, *SHAPE))
    return model


def _m2(objective=None):
    model = m2.M2(*_parts(), classifier=networks.MLP([8], 3), num_classes=3,
                  objective=objective, seed=0)
    model.build((None, *SHAPE))
    return model


def _hvae(objective=None):
    likelihood = families.Bernoulli(SHAPE)
    stack = mlp.MLPStack(SHAPE, (4, 2), (8, 8), likelihood.params_size, inference="ladder",
                         seed=1)
    model = hvae.HierarchicalVAE(stack, likelihood, objective=objective, seed=0)
    model(X[:1])
    return model


def _model_for(name, objective):
    return _m2(objective) if name == "semi_supervised" else _vae(objective)


def _same_objective(a, b):
    assert type(a) is type(b), (a, b)
    assert a.get_config() == b.get_config(), (a, b)


# ------------------------------------------------------------------ serialization
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_round_trips_through_keras_serialization(name):
    objective = OBJECTIVES[name]
    assert objective.get_config() == OPTIONS[name]          # every option is in the config
    config = keras.saving.serialize_keras_object(objective)
    assert config["registered_name"] == f"tfvae>{type(objective).__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    _same_objective(restored, objective)
    assert restored is not objective and restored.get_config() == OPTIONS[name]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_model_config_keeps_the_objective_and_its_loss(name):
    model = _model_for(name, OBJECTIVES[name])
    config = model.get_config()
    assert config["objective"]["config"] == OPTIONS[name]
    clone = type(model).from_config(json.loads(json.dumps(config)))
    _same_objective(clone.training_objective, model.training_objective)
    assert [m.name for m in clone.metrics] == [m.name for m in model.metrics]
    # The clone trains on the same objective: with the same weights, the same loss.
    clone.build((None, *SHAPE))
    clone.set_weights(model.get_weights())
    batch = {"labelled": (X[:3], np.array([0, 1, 2], np.int32)), "unlabelled": X} \
        if name == "semi_supervised" else X
    ours, theirs = model.objective(batch, SEED), clone.objective(batch, SEED)
    assert set(ours) == set(theirs) >= set(model.training_objective.metric_names)
    for key in ours:
        np.testing.assert_allclose(float(theirs[key]), float(ours[key]), rtol=1e-6, err_msg=key)


def test_hierarchical_model_config_keeps_the_objective():
    model = _hvae(ELBO(beta=0.5, kl_warmup_steps=3, free_bits=0.2, free_bits_groups=2))
    clone = hvae.HierarchicalVAE.from_config(model.get_config())
    _same_objective(clone.training_objective, model.training_objective)
    assert clone.training_objective.free_bits_groups == 2


def test_keras_file_keeps_the_iwae_objective(tmp_path):
    model = _vae(IWAEBound(3, 2))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(X, epochs=1, batch_size=6, verbose=0)
    path = os.path.join(tmp_path, "iwae.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is VAE
    assert isinstance(loaded.training_objective, IWAEBound)
    assert (loaded.training_objective.k, loaded.training_objective.m) == (3, 2)
    assert "iwae" in [m.name for m in loaded.metrics]
    # Same weights and objective: the same bound and loss (6 = m * k draws per example).
    np.testing.assert_allclose(loaded.training_objective.bound(loaded, X, seed=[1, 2]),
                               model.training_objective.bound(model, X, seed=[1, 2]), rtol=1e-6)
    ours, theirs = model.objective(X, SEED), loaded.objective(X, SEED)
    for key in ("loss", "iwae", "elbo"):
        np.testing.assert_allclose(float(theirs[key]), float(ours[key]), rtol=1e-6, err_msg=key)


# ------------------------------------------------------------------ old configs
def _legacy(class_name, config):
    return {"module": None, "class_name": class_name, "registered_name": f"tfvae>{class_name}",
            "config": config}


def _old_vae_config(**options):
    """A current VAE's config as tfvae wrote it before objectives: no "objective", the
    options at the top level."""
    config = _vae().get_config()
    del config["objective"]
    return json.loads(json.dumps({**config, **options}))


OLD_ELBO = dict(analytic_kl=False, beta=1.0, kl_warmup_steps=0, free_bits=0.0,
                free_bits_groups=1)


def test_old_iwae_config_loads_as_a_vae_with_the_iwae_bound():
    model = keras.saving.deserialize_keras_object(
        _legacy("IWAE", _old_vae_config(k=3, m=2, **OLD_ELBO)))
    assert type(model) is VAE
    _same_objective(model.training_objective, IWAEBound(k=3, m=2))
    model.build((None, *SHAPE))
    assert model.training_objective.bound(model, X, seed=[1, 2]).shape == (6,)


def test_old_vae_config_gives_the_elbo_of_its_options():
    options = dict(analytic_kl=False, beta=2.0, kl_warmup_steps=5, free_bits=0.5,
                   free_bits_groups=2)
    config = {"module": "tfvae.models.vae", "class_name": "VAE", "registered_name": "tfvae>VAE",
              "config": _old_vae_config(**options)}
    model = keras.saving.deserialize_keras_object(config)
    assert type(model) is VAE
    _same_objective(model.training_objective, ELBO(**options))
    assert "objective" in model.get_config()                  # saved the new way from now on


@pytest.mark.parametrize("class_name, options, expected", [
    ("BetaVAE", dict(OLD_ELBO, beta=4.0, analytic_kl=True, capacity_max=0.0,
                     capacity_steps=100000, gamma=1000.0), ELBO(beta=4.0)),
    ("BetaVAE", dict(OLD_ELBO, beta=4.0, capacity_max=5.0, capacity_steps=200, gamma=30.0),
     CapacityELBO(5.0, 200, 30.0, analytic_kl=False)),
    ("BetaTCVAE", dict(OLD_ELBO, beta=6.0, alpha=0.5, gamma=2.0, dataset_size=300,
                       estimator="mws"),
     BetaTC(alpha=0.5, beta=6.0, gamma=2.0, dataset_size=300, estimator="mws",
            analytic_kl=False)),
])
def test_old_disentangling_configs_load_as_a_vae_with_their_objective(class_name, options,
                                                                       expected):
    model = keras.saving.deserialize_keras_object(_legacy(class_name, _old_vae_config(**options)))
    assert type(model) is VAE
    _same_objective(model.training_objective, expected)


def test_old_m2_and_hierarchy_configs_give_their_objective():
    config = _m2().get_config()
    del config["objective"]
    old = m2.M2.from_config({**config, "alpha": 0.25, **dict(OLD_ELBO, analytic_kl=True)})
    _same_objective(old.training_objective, SemiSupervisedBound(0.25))
    config = _hvae().get_config()
    del config["objective"]
    options = dict(analytic_kl=True, beta=0.5, kl_warmup_steps=4, free_bits=0.1,
                   free_bits_groups=2)
    old = hvae.HierarchicalVAE.from_config({**config, **options})
    _same_objective(old.training_objective, ELBO(**options))


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("make, message", [
    (lambda: ELBO(beta=-1), "`beta` must be >= 0. Received: beta=-1"),
    (lambda: ELBO(kl_warmup_steps=2.5), "Received: kl_warmup_steps=2.5"),
    (lambda: ELBO(analytic_kl="yes"), "Received: analytic_kl='yes'"),
    (lambda: IWAEBound(analytic_kl=True), "Received: analytic_kl=True"),
    (lambda: IWAEBound(k=0), "`k` must be an integer >= 1. Received: k=0"),
    (lambda: IWAEBound(m=0), "Received: m=0"),
    (lambda: BetaTC(estimator="exact"), "Received: estimator='exact'"),
    (lambda: BetaTC(gamma=-0.5), "Received: gamma=-0.5"),
    (lambda: CapacityELBO(-1.0), "Received: capacity_max=-1.0"),
    (lambda: CapacityELBO(5.0, capacity_steps=0), "Received: capacity_steps=0"),
    (lambda: SemiSupervisedBound(alpha=-2.0), "Received: alpha=-2.0"),
])
def test_objective_refuses_an_option_out_of_range(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize("make, message", [
    # A flow posterior has no closed-form KL.
    (lambda: _vae(ELBO(analytic_kl=True), flow=planar.PlanarFlow(4, 1)),
     r"ELBO\(analytic_kl=True\) needs a closed-form KL, which VAE does not have"),
    (lambda: _vae(CapacityELBO(5.0), flow=planar.PlanarFlow(4, 1)),
     r"CapacityELBO\(analytic_kl=True\) needs a closed-form KL"),
    # Nor a mixture prior.
    (lambda: vamp_vae.VampVAE(*_parts(), vamp_prior=vamp.VampPrior(3, SHAPE),
                              objective=ELBO(analytic_kl=True)),
     r"ELBO\(analytic_kl=True\) needs a closed-form KL, which VampVAE does not have"),
    # A full-covariance posterior's KL does not split over dimensions.
    (lambda: _vae(ELBO(free_bits=1.0, free_bits_groups=2),
                  family=families.FullCovarianceGaussian(4)),
     "splits over latent dimensions.*Received: free_bits_groups=2"),
    (lambda: _vae(BetaTC(), family=families.FullCovarianceGaussian(4)),
     "β-TC decomposition needs per-dimension posterior densities"),
    (lambda: _vae(BetaTC(), flow=planar.PlanarFlow(4, 1)),
     "β-TC decomposition needs per-dimension posterior densities"),
    # Groups that do not divide the latent size (4), or a layer's size (2) of a hierarchy.
    (lambda: _vae(ELBO(free_bits_groups=3)), r"divide .*\[4\]. Received: free_bits_groups=3"),
    (lambda: _hvae(ELBO(free_bits_groups=4)), r"\[4, 2\]. Received: free_bits_groups=4"),
    # M2 trains only its own bound, and its bound needs M2's terms.
    (lambda: _m2(ELBO()), "must be a SemiSupervisedBound. Received: objective=ELBO"),
    (lambda: _vae(SemiSupervisedBound()), "SemiSupervisedBound trains a model with a "
                                          "classifier.*Received: VAE"),
    (lambda: _vae("elbo"), "must be a tfvae Objective"),
    # A hierarchy has no single factorized posterior, and takes one posterior pass.
    (lambda: _hvae(BetaTC()), "β-TC decomposition needs per-dimension posterior densities"),
    (lambda: _hvae(IWAEBound(k=2)), r"IWAEBound\(k=2, m=1, analytic_kl=False\) needs 2 "
                                    "posterior draws.*HierarchicalVAE take at most 1"),
])
def test_objective_refuses_what_the_model_cannot_give(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_objectives_bind_where_the_model_can_give_them():
    """The refusals above are specific: the same objectives bind to a model that has
    what they need (a factorized Gaussian without flow, the standard normal)."""
    for objective in (ELBO(free_bits=1.0, free_bits_groups=2), BetaTC(), CapacityELBO(5.0),
                      ELBO(analytic_kl=True)):
        assert _vae(objective).training_objective is objective
    assert _vae(ELBO(analytic_kl=False), flow=planar.PlanarFlow(4, 1)) is not None
    assert _vae(IWAEBound(np.int64(3))).training_objective.k == 3       # numpy integers too
    assert _hvae(IWAEBound(k=1)).training_objective.num_samples == 1
    # One free-bits group (the total KL) needs no per-dimension KL.
    assert _vae(ELBO(free_bits=1.0), family=families.FullCovarianceGaussian(4)) is not None


# ------------------------------------------------------------------ the bounds
def test_iwae_with_one_sample_is_the_monte_carlo_elbo_on_the_same_draws():
    model = _vae(ELBO(analytic_kl=False))
    terms = model.objective_terms(model.read_batch(X), SEED, num_samples=1, analytic_kl=False)
    iwae = IWAEBound(k=1).loss(terms, 0)
    elbo = ELBO(analytic_kl=False).loss(terms, 0)
    by_hand = float(tf.reduce_mean(terms.log_likelihood - terms.kl))
    assert float(elbo["loss"]) == pytest.approx(-by_hand, rel=1e-6)
    assert float(iwae["loss"]) == pytest.approx(float(elbo["loss"]), rel=1e-6)
    assert float(iwae["iwae"]) == pytest.approx(float(elbo["elbo"]), rel=1e-6)
    for key in ("elbo", "rate", "distortion"):
        assert float(iwae[key]) == pytest.approx(float(elbo[key]), rel=1e-6), key
    # Through the models: IWAEBound(1) asks for the same single Monte-Carlo draw.
    iwae_model = VAE(model.encoder, model.decoder, model.latent, model.likelihood,
                     objective=IWAEBound(k=1), seed=0)
    assert float(iwae_model.objective(X, SEED)["loss"]) == pytest.approx(
        float(model.objective(X, SEED)["loss"]), rel=1e-6)
    # And it is not the bound of k > 1 on the same model (the comparison can fail).
    miwae = IWAEBound(k=2).loss(model.objective_terms(model.read_batch(X), SEED, num_samples=2,
                                                      analytic_kl=False), 0)
    assert float(miwae["loss"]) < float(miwae["distortion"] + miwae["rate"]) - 1e-4


def test_elbo_objective_weights_the_rate_by_its_schedule():
    model = _vae(ELBO(beta=3.0, kl_warmup_steps=10))
    model.compile(optimizer="adam")
    objective = model.training_objective
    for step, weight in ((0, 0.0), (5, 1.5), (40, 3.0)):
        model.optimizer.iterations.assign(step)
        assert float(objective.kl_weight(model.optimizer_step())) == pytest.approx(weight)
        out = model.objective(X, SEED)
        assert float(out["beta"]) == pytest.approx(weight)
        assert float(out["loss"]) == pytest.approx(
            float(out["distortion"]) + weight * float(out["rate"]), rel=1e-6)


# ------------------------------------------------------------------ the zoo's configs
@pytest.mark.parametrize("entry, options, message", [
    ("iwae", dict(beta=2.0), "`beta` not used by the IWAE bound.*Received: beta=2.0"),
    ("iwae", dict(kl_warmup_steps=5), "Received: kl_warmup_steps=5"),
    ("beta_tcvae", dict(free_bits=1.0), "`free_bits` not used by the β-TC objective.*"
                                        "Received: free_bits=1.0"),
    ("beta_vae", dict(capacity_max=5.0, free_bits=1.0),
     "`free_bits` not used by capacity annealing.*Received: free_bits=1.0"),
    ("beta_vae", dict(capacity_max=5.0, kl_warmup_steps=10), "Received: kl_warmup_steps=10"),
    ("iwae", dict(k=0), "Received: k=0"),
])
def test_zoo_configs_refuse_options_their_objective_does_not_use(entry, options, message):
    import zoo
    with pytest.raises(ValueError, match=message):
        zoo.load(entry).Config(**options)


def test_zoo_configs_build_their_objective():
    import zoo
    _same_objective(zoo.load("iwae").Config(k=3, m=2).objective(), IWAEBound(3, 2))
    _same_objective(zoo.load("beta_vae").Config().objective(), ELBO(beta=4.0))
    _same_objective(zoo.load("beta_vae").Config(capacity_max=5.0, capacity_steps=10,
                                                gamma=2.0).objective(),
                    CapacityELBO(5.0, 10, 2.0))
    _same_objective(zoo.load("beta_tcvae").Config(alpha=0.5, estimator="mws").objective(400),
                    BetaTC(alpha=0.5, beta=6.0, gamma=1.0, dataset_size=400, estimator="mws"))
    _same_objective(zoo.load("vae").Config(beta=2.0, kl_warmup_steps=3).objective(),
                    ELBO(beta=2.0, kl_warmup_steps=3))
    # The options an entry lacks keep ELBO's defaults, `fixed` ones win.
    from zoo import vae as vae_entry
    _same_objective(vae_entry.elbo_objective(zoo.load("vae").Config(beta=2.0), beta=0.5),
                    ELBO(beta=0.5))


# Parses the resnet_vae flags of each argv (a JSON list of lists) as `python -m zoo.resnet_vae`
# does, and prints the config each gives as one JSON line (or the error).
_PRESET_FLAGS = """
import json, sys
from absl import flags
from zoo import common, resnet_vae
common.define_flags(resnet_vae.Config)
for argv in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    try:
        print("CONFIG " + json.dumps(common.config_from_flags(resnet_vae.Config,
                                                              resnet_vae.PRESETS).to_json()))
    except ValueError as e:
        print("ERROR " + str(e))
"""


def test_preset_flag_picks_the_preset_defaults_and_flags_override_them():
    argvs = [["prog", "--workdir=x", "--preset=small", "--num_layers=3",
              "--layers_per_resolution="],
             ["prog", "--workdir=x", "--preset=small"],
             ["prog", "--workdir=x", "--num_layers=4", "--layers_per_resolution=2,2"],
             ["prog", "--workdir=x", "--preset=tiny"]]
    result = subprocess.run([sys.executable, "-c", _PRESET_FLAGS, json.dumps(argvs)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(("CONFIG", "ERROR"))]
    assert len(lines) == len(argvs), result.stdout
    overridden, small, paper = (json.loads(line.split(" ", 1)[1]) for line in lines[:3])
    # --preset=small: the small preset's defaults, except the flags given.
    assert overridden["preset"] == "small" and overridden["hidden_channels"] == 16
    assert overridden["dataset"] == "image_patches" and overridden["latent_channels"] == 8
    assert overridden["num_layers"] == 3 and overridden["layers_per_resolution"] == []
    assert small["num_layers"] == 2 and small["hidden_channels"] == 16
    assert small["jit_compile"] is False
    # No --preset: the paper's defaults with the flags given.
    assert paper["preset"] == "paper" and paper["hidden_channels"] == 160
    assert paper["dataset"] == "cifar10"
    assert paper["num_layers"] == 4 and paper["layers_per_resolution"] == [2, 2]
    assert lines[3].startswith("ERROR") and "preset='tiny'" in lines[3], lines[3]


def test_terms_defaults():
    """`Terms` needs only the likelihood and the KL (no groups, posterior or extras)."""
    terms = base.Terms(tf.zeros([1, 2]), tf.zeros([2]))
    assert terms.kl_groups is None and terms.posterior is None and terms.extras == {}
