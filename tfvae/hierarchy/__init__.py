"""Hierarchical VAEs: top-down stacks of stochastic layers (book §4.1-4.2).

`base` holds what every layer shares (`LayerOutput(z, q, p, kl)`, the ladder
merge, IAF draws); `mlp.MLPStack` and `resnet.ResNetStack` are the stacks,
each with the inference options of `base.INFERENCE` it supports.
"""
