"""Synthetic workload traces for training (the augmentation the real traces are mixed with).

Each trace is generated at a 1-minute step (resampled later like the real ones) from a
seeded generator, as a product of parts a production workload shows:

- a daily profile: 1-3 sine harmonics or 1-3 Gaussian bumps (business hours, batch jobs);
- day-to-day amplitude drift (random walk) and, for 60 %, a weekend factor of 0.3-1.2;
- a slow trend, and for 30 % a level shift at a random time;
- for 20 %, a short cycle (a 15-120 minute triangle wave, like the seed's hourly client);
- AR(1) multiplicative noise (phi 0-0.95, sigma 0.5-25 %), random spikes (x1.5-6);
- for 10 %, Poisson counts (sparse, many zeros); for 15 %, a gap of up to an hour (NaN);
- a magnitude of 10^-3 to 10^6.

Only numpy; deterministic for a given `numpy.random.Generator`.
"""

from __future__ import annotations

import numpy as np

STEP = 60
DAY = 1440


def trace(rng: np.random.Generator, days: int = 17) -> np.ndarray:
    """One synthetic trace of `days` days at a 1-minute step."""
    length = days * DAY
    t = np.arange(length)
    time_of_day = (t % DAY) / DAY
    day_of_week = (t // DAY + int(rng.integers(7))) % 7
    profile = np.zeros(length)
    if rng.random() < 0.5:
        for k in range(1, int(rng.integers(2, 5))):
            profile += rng.normal(0, 1 / k) * np.sin(
                2 * np.pi * k * time_of_day + rng.uniform(0, 2 * np.pi)
            )
    else:
        for _ in range(int(rng.integers(1, 4))):
            centre, width, height = rng.uniform(0, 1), rng.uniform(0.03, 0.25), rng.uniform(0.3, 2)
            distance = np.minimum(np.abs(time_of_day - centre), 1 - np.abs(time_of_day - centre))
            profile += height * np.exp(-0.5 * (distance / width) ** 2)
    profile = (profile - profile.min()) / (np.ptp(profile) + 1e-9)
    daily = np.exp(np.cumsum(rng.normal(0, rng.uniform(0, 0.1), days)))[t // DAY]
    weekend = np.where(day_of_week >= 5, rng.uniform(0.3, 1.2), 1.0) if rng.random() < 0.6 else 1.0
    x = 1 + rng.uniform(0.1, 3.0) * profile * daily * weekend
    x *= np.exp(rng.normal(0, 0.05) * t / DAY)
    if rng.random() < 0.3:
        x[int(rng.integers(length // 3, length)) :] *= np.exp(rng.normal(0, 0.4))
    if rng.random() < 0.2:
        period = int(rng.choice([15, 30, 60, 120]))
        x *= 1 + rng.uniform(0.1, 1.0) * np.abs((t % period) / period * 2 - 1)
    x *= np.exp(_ar1(rng, length))
    spikes = rng.poisson(length * rng.uniform(0, 0.002))
    if spikes:
        x[rng.integers(0, length, spikes)] *= rng.uniform(1.5, 6, spikes)
    if rng.random() < 0.1:
        x = rng.poisson(np.maximum(x * rng.uniform(0.05, 3), 0)).astype(np.float64)
    if rng.random() < 0.15:
        start = int(rng.integers(0, length - 60))
        x[start : start + int(rng.integers(1, 60))] = np.nan
    magnitude = float(10 ** rng.uniform(-3, 6))
    return np.asarray(x * magnitude, dtype=np.float64)


def _ar1(rng: np.random.Generator, length: int) -> np.ndarray:
    """AR(1) noise with unit-free stationary deviation, by convolution (no Python loop)."""
    phi, sigma = rng.uniform(0, 0.95), rng.uniform(0.005, 0.25)
    kernel = phi ** np.arange(400)
    shocks = rng.normal(0, sigma * np.sqrt(1 - phi**2), length + len(kernel))
    return np.convolve(shocks, kernel, mode="valid")[:length]
