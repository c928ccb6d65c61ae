"""The benchmark harness's own arithmetic: FLOP counting and generated tables."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from bench import flops
from bench import report
from bench import roofline
from bench import timing


def _graph(fn, *specs):
    return tf.function(fn).get_concrete_function(*specs).graph


def test_matmul_flops_of_an_mlp_are_twice_its_multiply_adds():
    mlp = keras.Sequential([keras.layers.Dense(7), keras.layers.Dense(3)])
    mlp.build((None, 5))
    graph = _graph(mlp, tf.TensorSpec([4, 5]))
    assert flops.matmul_flops(graph) == 2 * 4 * (5 * 7 + 7 * 3)


def test_einsum_batch_matmul_and_transposes():
    a, b = tf.TensorSpec([6, 2, 4, 5]), tf.TensorSpec([5, 3, 9])
    # "...k,kdp->...dp": 6*2*4 leading positions, k=5, d=3, p=9.
    graph = _graph(lambda x, w: tf.einsum("...k,kdp->...dp", x, w), a, b)
    assert flops.matmul_flops(graph) == 2 * 6 * 2 * 4 * 5 * 3 * 9
    graph = _graph(lambda x, y: tf.matmul(x, y, transpose_b=True),
                   tf.TensorSpec([3, 8, 4]), tf.TensorSpec([3, 6, 4]))
    assert flops.matmul_flops(graph) == 2 * 3 * 8 * 4 * 6
    graph = _graph(lambda x, y: tf.matmul(x, y, transpose_a=True),
                   tf.TensorSpec([4, 8]), tf.TensorSpec([4, 6]))
    assert flops.matmul_flops(graph) == 2 * 8 * 4 * 6


def test_convolution_flops_match_the_direct_count():
    conv = keras.layers.Conv2D(8, 3, padding="same")
    deconv = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")
    conv.build((None, 6, 6, 2))
    deconv.build((None, 6, 6, 8))
    graph = _graph(lambda x: deconv(conv(x)), tf.TensorSpec([2, 6, 6, 2]))
    direct_conv = 2 * (2 * 6 * 6 * 8) * 3 * 3 * 2          # outputs x kernel window
    direct_deconv = 2 * (2 * 6 * 6 * 8) * 3 * 3 * 4        # each input scattered to a window
    assert flops.matmul_flops(graph) == direct_conv + direct_deconv


def test_control_flow_is_refused_rather_than_undercounted():
    graph = _graph(lambda x: tf.cond(x[0, 0] > 0, lambda: tf.matmul(x, x), lambda: x),
                   tf.TensorSpec([3, 3]))
    with pytest.raises(ValueError, match="control flow"):
        flops.matmul_flops(graph)


def test_dynamic_shapes_are_refused():
    graph = _graph(lambda x: tf.matmul(x, tf.ones([3, 2])), tf.TensorSpec([None, 3]))
    with pytest.raises(ValueError, match="static shapes"):
        flops.matmul_flops(graph)


class _Mlp:
    """A two-layer MLP with the zoo models' `objective(x, seed)` protocol."""

    def __init__(self):
        self.net = keras.Sequential([keras.layers.Dense(7), keras.layers.Dense(3)])
        self.net.build((None, 5))
        self.trainable_variables = self.net.trainable_variables

    def objective(self, x, seed):
        del seed
        return {"loss": tf.reduce_sum(self.net(x) ** 2)}


def test_roofline_counts_the_forward_and_backward_matmuls_of_the_step():
    matmuls = roofline.step_matmuls(roofline.step_graph(_Mlp(), tf.zeros([4, 5])))
    shapes = sorted((sig[1][0][0], sig[1][1][0], dict(sig[2])["transpose_a"],
                     dict(sig[2])["transpose_b"]) for sig, (count, _) in matmuls.items()
                    for _ in range(count))
    # Forward x @ W1, h @ W2; backward dW2 = h^T g, dh = g W2^T, dW1 = x^T dh (no dx: x is
    # not a variable).
    assert shapes == sorted([((4, 5), (5, 7), False, False), ((4, 7), (7, 3), False, False),
                             ((4, 7), (4, 3), True, False), ((4, 3), (7, 3), False, True),
                             ((4, 5), (4, 7), True, False)])
    signature = next(iter(matmuls))
    assert roofline.time_op(signature, repeat=2, repeats=2) > 0
    with pytest.raises(ValueError, match="control flow"):
        roofline.step_matmuls(_graph(lambda x: tf.cond(x[0, 0] > 0, lambda: tf.matmul(x, x),
                                                       lambda: x), tf.TensorSpec([3, 3])))


def test_roofline_charges_adam_seven_passes_over_the_parameters():
    bound = roofline.roofline(_Mlp(), tf.zeros([4, 5]))
    assert bound["parameters"] == 5 * 7 + 7 + 7 * 3 + 3
    assert bound["optimizer_bytes"] == 7 * 4 * bound["parameters"]
    assert bound["optimizer_seconds"] == pytest.approx(
        bound["optimizer_bytes"] / bound["memory_bytes_per_second"])
    assert bound["seconds"] == pytest.approx(bound["matmul_seconds"] + bound["optimizer_seconds"])
    assert bound["memory_bytes_per_second"] == max(bound["memory_bytes_per_second_by"].values())
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        roofline.roofline(_Mlp(), tf.zeros([4, 5]), optimizer="lamb")


def test_overrides_parse_json_values():
    assert timing.parse_overrides(["num_flows=8", "flow_hidden_units=[64, 64]", "flow=iaf"]) == {
        "num_flows": 8, "flow_hidden_units": (64, 64), "flow": "iaf"}
    with pytest.raises(ValueError, match="key=value"):
        timing.parse_overrides(["num_flows"])


def _row(entry, epochs, log_likelihood):
    return {"entry": entry, "dataset": "fashion_mnist", "epochs": epochs, "n": 100,
            "elbo": log_likelihood - 3, "elbo_stderr": 0.5, "log_likelihood": log_likelihood,
            "log_likelihood_stderr": 0.5, "num_importance_samples": 1000,
            "bits_per_dim": -log_likelihood / (784 * np.log(2)), "train_seconds": 10.0}


def test_leaderboard_is_generated_from_the_json_files(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    common = {"date": "2026-11-28", "machine": "test", "command": "python -m bench.likelihood"}
    (results / "a.json").write_text(json.dumps(
        {**common, "rows": [_row("vae", 5, -250.0), _row("iwae", 10, -240.0)]}))
    (results / "b.json").write_text(json.dumps({**common, "rows": [_row("vae", 10, -245.0)]}))
    (results / "throughput.json").write_text(json.dumps({"vae": {
        "dataset": "fashion_mnist", "examples_per_sec": 1234.4, "batch_size": 128,
        "steps_per_execution": 10, "flops_per_example": 8.26e6, "gflops": 10.0,
        "matmul_peak_gflops": 20.0, "efficiency": 0.5, "command": "python -m bench.throughput",
        "date": "2026-11-28"}}))
    monkeypatch.setattr(report, "RESULTS", str(results))
    text = report.render("x\n<!-- leaderboard:begin -->\nold\n<!-- leaderboard:end -->\ny\n"
                         "<!-- tables:begin --><!-- tables:end -->")
    board = text.split("<!-- leaderboard:begin -->")[1].split("<!-- leaderboard:end -->")[0]
    rows = [line for line in board.splitlines() if line.startswith("| `")]
    # Best log-likelihood first; vae from its 10-epoch run (b.json), with its examples/s.
    assert rows[0].startswith("| `iwae` ") and "| — |" in rows[0]
    assert rows[1].startswith("| `vae` ") and "-245.00" in rows[1] and "| 1234 |" in rows[1]
    assert "b.json" in rows[1] and "old" not in text and text.endswith("<!-- tables:end -->")
