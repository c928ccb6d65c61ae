"""Training-throughput measurement shared by the benchmarks (see bench.throughput).

`measure(entry, ...)` builds and compiles a zoo entry as the training loop
does, times `fit` epochs on cached batches of the loop's own pipeline
(optionally alternating with a pythae peer), and relates the rate to the
matmul FLOPs of the traced objective and the CPU's measured matmul peak, and
the step time to the step's roofline (`bench.roofline`: its own matmuls timed
alone plus Adam's bytes at the measured memory bandwidth).
"""

import datetime
import json
import os
import platform
import time

import tensorflow as tf

import zoo
from bench import flops as flops_lib
from bench import roofline as roofline_lib
from tfvae.data import datasets as data_lib
from tfvae.nn import precision
from tfvae.training import train


def matmul_peak_gflops(n=2048, repeats=10):
    """float32 GFLOP/s of TensorFlow's n x n x n matmul (best of `repeats`)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


# The flags of /proc/cpuinfo that decide the speed of these benchmarks (CPUs differ between
# the project's machines: AVX2 only, or AVX-512 with AMX-BF16).
FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
            "amx_bf16", "amx_int8", "f16c")


def cpu_report(path="/proc/cpuinfo"):
    """The CPU's model, its cores and its `FEATURES` that are present (recorded beside
    every speed figure); model and features are empty where `path` is unreadable."""
    info = precision.cpu_info(path)
    present = set(info.get("flags", "").split())
    return {"model": info.get("model name", platform.processor()), "cores": os.cpu_count(),
            "features": [f for f in FEATURES if f in present]}


def intra_op_threads():
    """TensorFlow's intra-op thread count (its default, 0, means one per core)."""
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()


def objective_flops(model, batch):
    """Matmul FLOPs of one forward evaluation of the training objective on a batch shaped
    like `batch` (images [B, ...], or the pipeline's dict with the labels a conditional
    or semi-supervised model reads)."""
    seed = tf.constant([0, 0], tf.int32)
    fn = tf.function(lambda data: model.objective(data, seed)["loss"])
    return flops_lib.matmul_flops(fn.get_concrete_function(roofline_lib.specs(batch)).graph)


def parse_overrides(items):
    """["num_flows=8", ...] -> {"num_flows": 8, ...} (values parsed as JSON when they can be)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"`extra` items must be key=value. Received: {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
        if isinstance(overrides[key], list):
            overrides[key] = tuple(overrides[key])
    return overrides


def measure(entry_name, dataset="fashion_mnist", batch_size=128, steps_per_execution=0,
            steps=400, repeats=3, jit_compile=True, vs_peer=False, overrides=None,
            pipeline="cached"):
    """Returns a dict of throughput figures (see bench.throughput).

    `pipeline="cached"` times the model on cached batches of the loop's
    pipeline; "live" re-runs the pipeline every epoch (shuffling, dynamic
    binarization) as training does.
    """
    if pipeline not in ("cached", "live"):
        raise ValueError(f"`pipeline` must be cached or live. Received: pipeline={pipeline!r}")
    entry = zoo.load(entry_name)
    settings = dict(dataset=dataset, batch_size=batch_size, jit_compile=jit_compile,
                    **(overrides or {}))
    if steps_per_execution:
        settings["steps_per_execution"] = steps_per_execution
    config = entry.Config(**settings)
    train_ds = config.datasets()[0].take(steps)
    if pipeline == "cached":
        train_ds = train_ds.cache()
    first = next(iter(config.datasets()[1]))["image"]
    model = train.build_compiled(config, entry.build_model, data_lib.info(dataset), first,
                                 tf.distribute.get_strategy())
    # A training batch as the step sees it (images and labels: cvae and m2 read them).
    batch = next(iter(train_ds))
    flops = 3 * objective_flops(model, batch) / int(first.shape[0])  # per example
    model.fit(train_ds, epochs=1, verbose=0, shuffle=False)          # trace + compile
    # The peak is the best of a measurement before and one after the timed epochs: one
    # disturbed measurement (another process on the host) must not inflate the efficiency.
    peak_before = matmul_peak_gflops()
    peer = None
    if vs_peer:
        from bench import peers  # pylint: disable=import-outside-toplevel
        peer = peers.PythaePeer(intra_op_threads(), batch_size, steps,
                                latent_size=config.latent_size,
                                **peers.peer_flags(entry_name, config))
    seconds, peer_seconds = [], []
    try:
        for _ in range(repeats):                                     # A/B alternation
            start = time.perf_counter()
            model.fit(train_ds, epochs=1, verbose=0, shuffle=False)
            seconds.append(time.perf_counter() - start)
            if peer:
                peer_seconds.append(peer.epoch_seconds())
    finally:
        if peer:
            peer.close()
    examples_per_sec = steps * batch_size / min(seconds)
    peak = max(peak_before, matmul_peak_gflops())
    bound = roofline_lib.roofline(model, batch, optimizer="adam")
    step_seconds = min(seconds) / steps
    gflops = examples_per_sec * flops / 1e9
    result = {"entry": entry_name, "dataset": dataset, "batch_size": batch_size,
              "steps_per_execution": config.steps_per_execution,
              "jit_compile": bool(model.jit_compile), "overrides": overrides or {},
              "pipeline": pipeline,
              "steps": steps, "epoch_seconds": seconds, "examples_per_sec": examples_per_sec,
              "flops_per_example": flops, "gflops": gflops, "matmul_peak_gflops": peak,
              "efficiency": gflops / peak, "step_seconds": step_seconds,
              "roofline": bound, "roofline_efficiency": bound["seconds"] / step_seconds,
              "cpu": cpu_report(), "intra_op_threads": intra_op_threads(),
              "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    if peer:
        peer_rate = steps * batch_size / min(peer_seconds)
        result.update(peer=f"pythae {peer.info['model']} (torch {peer.info['torch']})", peer_epoch_seconds=peer_seconds,
                      peer_examples_per_sec=peer_rate,
                      speedup_vs_peer=examples_per_sec / peer_rate)
    return result


def merge_json(path, results):
    """Merges {entry: result} into the JSON file at `path` (written atomically)."""
    old = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    train.write_json_atomic(path, {**old, **results})
