"""Two-dimensional toy densities for flow density models (book §4.4).

`two_moons`, `eight_gaussians` and `pinwheel`, the usual test beds of
normalizing flows (e.g. FFJORD, Grathwohl et al. 2019), sampled with numpy
from a fixed seed per split so every run sees the same data.
`eight_gaussians` also has its exact log-density, an oracle for tests.
"""

import math

import numpy as np

TOY_DATASETS = ("two_moons", "eight_gaussians", "pinwheel")
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
SPLIT_SIZES = {"train": 50000, "validation": 10000, "test": 10000}
EIGHT_GAUSSIANS_RADIUS = 2.0
EIGHT_GAUSSIANS_SCALE = 0.2


def _two_moons(n, rng):
    """Two interleaved half circles with Gaussian noise 0.1 (scaled to ~unit spread)."""
    angle = rng.uniform(0.0, math.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return points + rng.normal(scale=0.1, size=points.shape)


def eight_gaussians_centers():
    """The 8 mixture means on a circle of radius `EIGHT_GAUSSIANS_RADIUS`: [8, 2]."""
    angles = np.arange(8) * (2 * math.pi / 8)
    return EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _eight_gaussians(n, rng):
    centers = eight_gaussians_centers()[rng.integers(0, 8, n)]
    return centers + rng.normal(scale=EIGHT_GAUSSIANS_SCALE, size=(n, 2))


def eight_gaussians_log_prob(points):
    """Exact log-density of `eight_gaussians` at points [n, 2]: [n]."""
    diff = np.asarray(points, np.float64)[:, None, :] - eight_gaussians_centers()[None]
    s2 = EIGHT_GAUSSIANS_SCALE ** 2
    log_components = -0.5 * (diff ** 2).sum(-1) / s2 - math.log(2 * math.pi * s2)
    top = log_components.max(1, keepdims=True)       # stable log-mean-exp
    return (top[:, 0] + np.log(np.exp(log_components - top).mean(1)))


def _pinwheel(n, rng, arms=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    """Johnson et al. (2016)'s pinwheel: `arms` spiralling Gaussian arms."""
    arm = rng.integers(0, arms, n)
    features = rng.normal(size=(n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angle = arm * (2 * math.pi / arms) + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([cos * features[:, 0] - sin * features[:, 1],
                        sin * features[:, 0] + cos * features[:, 1]], axis=1)
    return 2.0 * rotated


def sample(name, split):
    """The fixed sample of `name` for `split`: float32 [n, 2]."""
    if name not in TOY_DATASETS:
        raise ValueError(f"`name` must be one of {', '.join(TOY_DATASETS)}. Received: name={name!r}")
    rng = np.random.default_rng([SPLIT_SEEDS[split], TOY_DATASETS.index(name)])
    sampler = {"two_moons": _two_moons, "eight_gaussians": _eight_gaussians,
               "pinwheel": _pinwheel}[name]
    return sampler(SPLIT_SIZES[split], rng).astype(np.float32)
