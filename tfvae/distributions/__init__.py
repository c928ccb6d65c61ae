"""Distributions: families (weightless `params_size` + `make(params) -> tfd.Distribution`:
Bernoulli, Gaussian, discretized logistic (mixture), categorical, diagonal and
full-covariance Gaussian, relaxed one-hot), priors (standard normal, flow prior, VampPrior)
and the latent layer (head + posterior family + optional flow + prior)."""
