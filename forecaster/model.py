"""The network: weights a bank of seasonal forecasts by their in-context accuracy and turns
the result into calibrated multi-horizon quantiles.

Median: a softmax over candidates of ``-(error / best error - 1) / temperature`` plus a
per-series bias from a small MLP (`selector`), with one learned temperature per part of the
horizon (`ModelConfig.horizon_parts`: the lead steps, the rest of the first hour, the rest),
blended linearly across the horizon, then moved by at most one expected error (`shift`: the
median of a noisy or skewed series sits off the candidates' weighted mean). Quantiles: the
median plus cumulative positive offsets, each the weighted in-context error of the chosen
candidates times a learned per-quantile factor, a learned per-step profile (`log_profile`:
errors grow with the horizon inside a part) and a per-series correction from the same MLP,
which sees the errors, the recent history and the calendar. Outputs are ordered by
construction. `selector`, `shift` and `log_profile` start at zero: a format-1 network is this
one with them at zero.

Why this shape (and not PatchTST, N-HiTS or TiDE on raw windows): with a few dozen real
traces, networks that map raw history to the future learned the traces they saw; in
leave-one-source-out tests they lost to a level-adjusted seasonal median on the traces they had
not seen. Weighting explicit seasonal structures by how well each just worked generalises to
any series, and what is learned (how sharply to trust the in-context errors, how wide the
uncertainty is given the series' recent behaviour and the time of day) transfers across
sources. See `forecaster.features` for the inputs.

Pure torch: no I/O, no numpy, no knowledge of timestamps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_EPS = 1e-2
"""Floor for errors in scale units: a perfect candidate does not get an infinite weight."""


class SeasonalEnsembleModel(nn.Module):
    blend: torch.Tensor
    """(P, H) buffer: each step's share of every part of the horizon."""

    def __init__(
        self,
        *,
        candidates: int,
        horizon: int,
        parts: tuple[tuple[int, int], ...],
        quantiles: tuple[float, ...],
        recent_window: int,
        context_features: int,
        hidden_size: int,
        temperature: float,
    ) -> None:
        super().__init__()
        self.median_index = quantiles.index(0.5)
        count = len(parts)
        self.log_temperature = nn.Parameter(torch.full((count,), math.log(temperature)))
        inputs = candidates * 2 * count + recent_window + context_features
        self.body = nn.Sequential(
            nn.Linear(inputs, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
        )
        gaps = len(quantiles) - 1
        self.selector = nn.Linear(hidden_size, candidates * count)
        nn.init.zeros_(self.selector.weight)
        nn.init.zeros_(self.selector.bias)
        self.spread = nn.Linear(hidden_size, gaps * count)
        nn.init.zeros_(self.spread.weight)
        nn.init.zeros_(self.spread.bias)
        self.log_gap = nn.Parameter(torch.tensor(_laplace_gaps(quantiles)).log())
        self.log_profile = nn.Parameter(torch.zeros(horizon))
        self.shift = nn.Linear(hidden_size, count)
        nn.init.zeros_(self.shift.weight)
        nn.init.zeros_(self.shift.bias)
        # Each step's weights interpolate linearly between the parts' centres (the first part's
        # midpoint, the last part's end); before the first and after the last they are its own.
        centres = [(start + end) / 2 for start, end in parts[:-1]] + [float(horizon)]
        steps = torch.arange(horizon, dtype=torch.float32)
        blend = torch.zeros(count, horizon)
        blend[0] = (steps <= centres[0]).float()
        for k in range(count - 1):
            share = torch.clamp((steps - centres[k]) / (centres[k + 1] - centres[k]), 0.0, 1.0)
            inside = (steps > centres[k]) & (steps <= centres[k + 1])
            blend[k] = torch.where(inside, 1 - share, blend[k])
            blend[k + 1] = torch.where(inside, share, blend[k + 1])
        blend[count - 1] = torch.where(steps > centres[-1], 1.0, blend[count - 1])
        self.register_buffer("blend", blend)  # (P, H)

    def forward(
        self,
        candidates: torch.Tensor,  # (B, M, H)
        errors: torch.Tensor,  # (B, M, 2)
        recent: torch.Tensor,  # (B, R)
        context: torch.Tensor,  # (B, C)
    ) -> torch.Tensor:  # (B, Q, H)
        batch, count = candidates.shape[0], errors.shape[2]
        best = errors.min(1, keepdim=True).values
        relative = (errors + _EPS) / (best + _EPS)
        features = torch.cat(
            [
                torch.log(relative).reshape(batch, -1),
                torch.log(errors + _EPS).reshape(batch, -1),
                recent,
                context,
            ],
            1,
        )
        hidden = self.body(features)
        logits = -(relative - 1) / self.log_temperature.exp()[None, None, :]
        logits = logits + self.selector(hidden).reshape(batch, -1, count)
        weights = torch.softmax(logits, 1)  # over candidates, per horizon part
        per_step = torch.einsum("bmk,kh->bmh", weights, self.blend)
        median = (per_step * candidates).sum(1)

        expected = (weights * errors).sum(1)  # (B, 2)
        sigma = torch.einsum("bk,kh->bh", expected, self.blend).clamp_min(_EPS)
        correction = self.spread(hidden).reshape(batch, -1, count) @ self.blend
        median = median + torch.tanh(self.shift(hidden)) @ self.blend * sigma
        gaps = (
            torch.exp(self.log_gap[None, :, None] + correction + self.log_profile[None, None, :])
            * sigma[:, None, :]
        )
        below = torch.flip(torch.cumsum(torch.flip(gaps[:, : self.median_index], [1]), 1), [1])
        above = torch.cumsum(gaps[:, self.median_index :], 1)
        return torch.cat([median[:, None] - below, median[:, None], median[:, None] + above], 1)


def pinball_loss(
    prediction: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor
) -> torch.Tensor:
    """Mean quantile loss over observed targets (NaN targets are ignored)."""
    observed = ~torch.isnan(target)
    error = torch.nan_to_num(target)[:, None, :] - prediction
    q = quantiles[None, :, None]
    loss = torch.maximum(q * error, (q - 1) * error) * observed[:, None, :]
    return loss.sum() / observed.sum().clamp_min(1) / len(quantiles)


def _laplace_gaps(quantiles: tuple[float, ...]) -> list[float]:
    """Distances between neighbouring quantiles of a Laplace law with unit mean deviation."""

    def offset(q: float) -> float:
        return math.log(2 * q) if q < 0.5 else -math.log(2 * (1 - q))

    points = [offset(q) for q in quantiles]
    return [max(b - a, 1e-3) for a, b in zip(points, points[1:], strict=False)]
