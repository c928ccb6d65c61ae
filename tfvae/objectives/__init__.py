"""Objectives: the ELBO's terms and the training objectives as objects (`base.Objective`).

`base`: `Objective`, `Terms`, `KLSupport`; `elbo`: the KL estimators, free
bits, warm-up, the minibatch loss and `ELBO`; `importance_weighted`: IWAE /
MIWAE bounds and `IWAEBound`; `disentanglement`: capacity and the β-TC
decomposition (`CapacityELBO`, `BetaTC`); `semi_supervised`: M2's
`SemiSupervisedBound`.
"""
