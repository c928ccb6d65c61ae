"""Long evaluations show their progress: log lines outside a terminal, a Keras bar in one."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from absl import logging as absl_logging

from tfvae.evaluation import estimators


def _dataset(num_examples=20, batch_size=4):
    images = np.random.default_rng(0).integers(0, 2, (num_examples, 2, 2, 1)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices({"image": images}).batch(batch_size)


def _elbo_fn(batch, seed):
    del seed
    return -tf.reduce_sum(batch["image"], axis=[1, 2, 3]) - 1.0


def _log_prob_fn(batch, seed):
    del seed
    return -tf.reduce_sum(batch["image"], axis=[1, 2, 3]) - 0.5


@pytest.fixture
def absl_info(caplog):
    old = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    caplog.set_level(logging.INFO)
    yield caplog
    absl_logging.set_verbosity(old)


def test_outside_a_terminal_the_evaluation_logs_examples_done_and_time_left(
        absl_info, monkeypatch, capsys):
    monkeypatch.setattr(estimators, "PROGRESS_INTERVAL_SECONDS", 0.0)
    result = estimators.evaluate_functions(_elbo_fn, _log_prob_fn, _dataset(), num_samples=3,
                                           likelihood_support="binary")
    assert result["n"] == 20
    lines = [r.getMessage() for r in absl_info.records if "Evaluating" in r.getMessage()]
    assert lines[0] == ("Evaluating the ELBO and IS log p(x) (K=3): 4/20 examples, 0 s, "
                        "about 0 s left.")
    assert [line.split(": ")[1].split(" ")[0] for line in lines[:5]] == [
        "4/20", "8/20", "12/20", "16/20", "20/20"]
    assert lines[-1].startswith("Evaluating the ELBO and IS log p(x) (K=3): done, 20 examples in")
    assert "━" not in capsys.readouterr().out        # no progress bar outside a terminal


def test_a_short_evaluation_logs_nothing(absl_info):
    estimators.evaluate_functions(_elbo_fn, _log_prob_fn, _dataset(), num_samples=3)
    assert not [r for r in absl_info.records if "Evaluating" in r.getMessage()]


def test_progress_false_is_silent(absl_info, monkeypatch):
    monkeypatch.setattr(estimators, "PROGRESS_INTERVAL_SECONDS", 0.0)
    estimators.evaluate_functions(_elbo_fn, _log_prob_fn, _dataset(), num_samples=3,
                                  progress=False)
    assert not [r for r in absl_info.records if "Evaluating" in r.getMessage()]


def test_max_examples_and_unknown_sizes_bound_the_total(absl_info, monkeypatch):
    monkeypatch.setattr(estimators, "PROGRESS_INTERVAL_SECONDS", 0.0)
    estimators.evaluate_functions(_elbo_fn, _log_prob_fn, _dataset(), num_samples=0,
                                  max_examples=10)
    lines = [r.getMessage() for r in absl_info.records if "Evaluating" in r.getMessage()]
    assert lines[0].startswith("Evaluating the ELBO: 4/10 examples")
    assert estimators.expected_examples(_dataset().filter(lambda b: True), 4) is None
    assert estimators.expected_examples(_dataset(), 4, max_examples=100) == 20
    assert estimators.expected_examples([1, 2], 4) is None


def test_in_a_terminal_a_keras_progress_bar_counts_examples(capsys):
    progress = estimators.Progress(20, "Evaluating", terminal=True)
    for done in (4, 8, 12, 16, 18):
        progress.update(done)
    progress.finish(18)
    out = capsys.readouterr().out
    assert "18/18" in out and "/example" in out
