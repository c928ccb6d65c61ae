"""`tf.distribute` strategies for the training loop, and who writes the workdir.

`make_strategy(name)` returns the strategy `--strategy` names. Under a
multi-worker strategy every worker runs the same program; only the chief
(`is_chief`) writes the workdir's files (config, TensorBoard, `model.keras`,
export, metrics), and the other workers write their checkpoints to a
private folder (`worker_folder`) that nobody reads, as
`tf.distribute.MultiWorkerMirroredStrategy` requires every worker to save.
Every worker restores from the chief's checkpoints (a shared file system, as
on one host or a cluster with a shared disk).
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` accepts what Keras 3 passes it.

    Measured with Keras 3.15 on TF 2.21 (keras-team/keras#20585): `fit` under
    the stock strategy fails before its first step, because Keras reduces the
    whole input batch (a dict of per-replica tensors; TF's `reduce` takes one
    value) to build the model, and then every logged scalar with `axis=0`
    (which a scalar does not have). This `reduce` maps over the structure and
    reduces a scalar across replicas only; for one tensor with an axis it is
    the stock `reduce`.
    """

    def reduce(self, reduce_op, value, axis):
        def one(v):
            local = self.experimental_local_results(v)[0]
            return super(_MultiWorkerMirroredStrategy, self).reduce(
                reduce_op, v, None if local.shape.rank == 0 else axis)

        return tf.nest.map_structure(one, value)


def make_strategy(name, tpu=""):
    """Returns the `tf.distribute` strategy called `name` (see `STRATEGIES`).

    A multi-worker strategy reads the cluster from `TF_CONFIG` and must be
    created before any other TensorFlow op of the process (it configures
    collective ops): create it first.

    Args:
      name: "default", "mirrored" (all local devices), "multi_worker" (the
        workers of `TF_CONFIG`, each with its local devices) or "tpu".
      tpu: TPU address for name="tpu" ("" = the local or Colab TPU).

    Raises:
      ValueError: `name` is unknown, or name="multi_worker" without a valid
        `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        check_tf_config()
        return _MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def check_tf_config():
    """Raises ValueError unless `TF_CONFIG` describes a cluster with this task in it."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise ValueError("strategy=multi_worker needs the cluster in the TF_CONFIG environment "
                         "variable (see docs/distributed.md); TF_CONFIG is not set.")
    try:
        tf_config = json.loads(text)
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError("TF_CONFIG must be JSON like {\"cluster\": {\"worker\": [\"host:port\", "
                         "...]}, \"task\": {\"type\": \"worker\", \"index\": 0}} "
                         f"({type(e).__name__}: {e}). Received: TF_CONFIG={text!r}") from None
    if task.get("type") == "worker" and not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG's task index {index} is not one of the {len(workers)} "
                         f"workers. Received: TF_CONFIG={text!r}")


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True if this process writes the workdir: a single process, the "chief"
    task, or worker 0 of a cluster without a chief."""
    task_type, task_id = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_folder(workdir, strategy):
    """The folder a non-chief worker writes its checkpoints to (None for the chief)."""
    if is_chief(strategy):
        return None
    task_type, task_id = _task(strategy)
    return os.path.join(workdir, f".{task_type}-{task_id}")


def barrier(strategy):
    """Returns when every worker of `strategy` has called it (no-op on one worker).

    A collective sum of one per worker: used where one worker must see what
    the chief has written (its cleaned folders, the final best checkpoint).
    """
    if _task(strategy)[0] is None:
        return
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0), axis=None)
    expected = len(strategy.cluster_resolver.cluster_spec().as_dict().get("worker", []))
    if int(total.numpy()) < expected:
        raise RuntimeError(f"The barrier counted {int(total.numpy())} of {expected} workers.")


def describe(strategy):
    """One line for the log: replicas, and which worker of how many this process is."""
    text = f"{type(strategy).__name__.lstrip('_')} with {strategy.num_replicas_in_sync} replica(s)"
    task_type, task_id = _task(strategy)
    if task_type is not None:
        workers = len(strategy.cluster_resolver.cluster_spec().as_dict().get("worker", []))
        role = "chief" if is_chief(strategy) else "not the chief"
        text += f"; this process is {task_type} {task_id} of {workers} workers ({role})"
    return text
