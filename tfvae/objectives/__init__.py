"""Objectives: the ELBO's terms (KL estimators, free bits, warm-up, the minibatch loss;
`elbo`), importance-weighted bounds (IWAE, MIWAE; `importance_weighted`) and the
disentanglement objectives (capacity, the β-TC decomposition; `disentanglement`)."""
