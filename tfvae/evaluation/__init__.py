"""Evaluation: held-out ELBO and importance-sampled log-likelihood with what each number is
(`estimators`), and the variance of gradient estimators (`gradient_variance`)."""
