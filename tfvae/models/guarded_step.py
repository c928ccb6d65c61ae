"""One optimizer step that skips non-finite updates, on any `tf.distribute` strategy.

Used by `LatentVariableModel.train_step`: the per-replica loss is scaled by
1/replicas (gradients are summed over replicas), the step is skipped when the
loss or any gradient is NaN/inf on any replica, and the caller counts the
skip in a metric so the `SkippedStepGuard` callback can report it loudly.

float16 training (`--mixed_precision=float16`) uses Keras'
`LossScaleOptimizer`: the caller differentiates `optimizer.scale_loss(loss)`,
an overflowing step is skipped here like any other non-finite one and halves
the dynamic scale (as the optimizer would), and the gradient norm is that of
the unscaled gradients.
"""

import keras
import tensorflow as tf


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def dynamic_loss_scale(optimizer):
    """The loss scale variable of a `LossScaleOptimizer`, else None."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


def global_gradient_norm(grads):
    """The norm of the gradient summed over replicas, ||sum_r g_r|| (grads: a list
    of this replica's tensors or None).

    Under several replicas this all-reduces the gradients once more (the
    optimizer's own all-reduce is left as it is, so the update is unchanged):
    the per-replica norm would depend on the number of replicas, and so would
    `max_grad_norm`'s decision.
    """
    grads = [g for g in grads if g is not None]
    context = tf.distribute.get_replica_context()
    if num_replicas() > 1 and context is not None and grads:
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    return tf.linalg.global_norm(grads)


def minimize_if_finite(optimizer, tape, loss, variables, max_grad_norm=0.0):
    """Applies the gradient of `loss` (the replica's loss) unless it is non-finite.

    Args:
      optimizer: the model's Keras optimizer.
      tape: the `tf.GradientTape` that recorded `loss`.
      loss: scalar per-replica loss, already divided by the number of replicas
        and scaled by `optimizer.scale_loss` (the identity but for float16's
        `LossScaleOptimizer`).
      variables: the trainable variables.
      max_grad_norm: if > 0, also skip a step whose global gradient norm
        exceeds it: deep hierarchical VAEs get rare huge
        gradients from a collapsing posterior scale that one update would
        turn into NaNs (Child 2021's "skip updates"). 0 disables.

    Returns:
      (applied, grad_norm): a boolean scalar, True if the update was applied
      (equal on all replicas), and the norm of the gradient the optimizer
      applies (summed over replicas, unscaled): the one-device norm of the
      same global batch, for any number of replicas.
    """
    grads = tape.gradient(loss, variables)
    grads_finite = tf.constant(True)
    for g in grads:
        if g is not None:
            grads_finite = tf.logical_and(grads_finite, tf.reduce_all(tf.math.is_finite(g)))
    finite = tf.logical_and(tf.math.is_finite(loss), grads_finite)
    norm = global_gradient_norm(grads)
    scale = dynamic_loss_scale(optimizer)
    if scale is not None:
        norm = norm / scale
        overflow = tf.logical_not(grads_finite)       # float16 overflowed at this scale
    if max_grad_norm:
        finite = tf.logical_and(finite, norm <= max_grad_norm)
    context = tf.distribute.get_replica_context()
    if num_replicas() > 1 and context is not None:
        # All replicas must agree on skipping, or the all-reduce would hang.
        not_finite = tf.cast(tf.logical_not(finite), tf.float32)
        finite = context.all_reduce(tf.distribute.ReduceOp.SUM, not_finite) == 0.0
        if scale is not None:
            overflow = context.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(overflow, tf.float32)) > 0.0

    def apply():
        optimizer.apply(grads, variables)

    def skip():
        if scale is not None:
            # float16 overflowed at this scale: halve it (LossScaleOptimizer's own rule).
            keras.ops.cond(overflow, lambda: _lower_loss_scale(optimizer), lambda: None)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        keras.ops.cond(finite, apply, skip)
        return finite, norm

    # A strategy that aggregates gradients through `merge_call` (Mirrored)
    # cannot take a `cond` around `apply` in replica context; as Keras'
    # LossScaleOptimizer does, the `cond` then runs in cross-replica context.
    def cross_replica(distribution, grads, finite):
        first = distribution.experimental_local_results(finite)[0]

        def apply_each():
            distribution.extended.call_for_each_replica(optimizer.apply, args=(grads, variables))

        keras.ops.cond(first, apply_each, skip)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite))
    return finite, norm


def _lower_loss_scale(optimizer):
    """Halves a `LossScaleOptimizer`'s dynamic scale and restarts its growth count."""
    optimizer.step_counter.assign(0)
    optimizer.dynamic_scale.assign(optimizer.dynamic_scale * 0.5)


def update_metrics(trackers, values, finite, batch_size=1):
    """Averages `values` into `trackers` except on a skipped step; counts skips.

    Args:
      trackers: {name: keras Mean} plus "skipped_steps" (a Sum), which gets 1
        per skipped step in total: every replica adds its share.
      values: {name: scalar batch mean}.
      finite: whether the step was applied.
      batch_size: weight of this batch's means: held-out metrics pass the
        number of examples so that a last, smaller batch counts per example.
    """
    weight = tf.cast(finite, tf.float32) * tf.cast(batch_size, tf.float32)
    for name, value in values.items():
        # A skipped step must not turn the epoch's averages into NaN.
        trackers[name].update_state(tf.where(finite, value, 0.0), sample_weight=weight)
    trackers["skipped_steps"].update_state((1.0 - tf.cast(finite, tf.float32)) / num_replicas())
