"""Training: the default model from real traces plus synthetic ones, and fine-tuning.

`train(data_folder, config)` is the one reproducible command behind the shipped model:

1. read every CSV trace under `data_folder`; drop the last `holdout_days` of each (that span
   is what the benchmark evaluates, so the shipped model has never seen it);
2. generate `synthetic_series` traces (`forecaster.synthetic`);
3. draw `training_samples` forecast origins, at steps of 1 min, 5 min, 15 min and 1 h
   (15/55/15/15 %; each trace resampled to each step it is at least as fine as), half from
   real and half from synthetic traces, each with up to `context_length` steps of history and
   at least `min_history_days`; build the features once;
4. minimise the quantile (pinball) loss in scale units with AdamW and a one-cycle schedule.

Everything random flows from `config.seed`; torch runs deterministic algorithms on a fixed
number of threads, so the same data and config give the same checkpoint bytes.

With `forecaster.model`, this is the only module here that imports torch (the ``train``
extra): serving runs the same weights in numpy (`forecaster.network`), and the
conversions between the two (`to_network`, `to_model`) and the checkpoint's encoding
(`encode`) live here.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from forecaster import features, series as series_module, synthetic
from forecaster.config import ModelConfig
from forecaster.model import SeasonalEnsembleModel, pinball_loss
from forecaster.network import SeasonalEnsembleNetwork
from forecaster.series import Series, resample

STEP_MIX = ((60, 0.15), (300, 0.55), (900, 0.15), (3600, 0.15))
CHUNK = 512
TRAINING_THREADS = 2

Progress = Callable[[str], None]


@dataclasses.dataclass
class Dataset:
    features: features.Features
    targets: np.ndarray  # (N, H) float32, scaled, NaN where unobserved


def build_model(config: ModelConfig) -> SeasonalEnsembleModel:
    """A fresh torch model of `config`'s shape."""
    return SeasonalEnsembleModel(
        candidates=len(config.candidates),
        horizon=config.prediction_length,
        parts=config.horizon_parts(),
        quantiles=config.quantiles,
        recent_window=config.recent_window,
        context_features=features.CONTEXT_FEATURES,
        hidden_size=config.hidden_size,
        temperature=config.temperature,
    )


def to_network(model: SeasonalEnsembleModel, config: ModelConfig) -> SeasonalEnsembleNetwork:
    """The numpy network with a copy of `model`'s weights (what serving runs)."""
    state = {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}
    return SeasonalEnsembleNetwork(state, config)


def to_model(network: SeasonalEnsembleNetwork, config: ModelConfig) -> SeasonalEnsembleModel:
    """A torch model with a copy of `network`'s weights, in evaluation mode."""
    model = build_model(config)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in network.state_dict().items()})
    return model.eval()


def encode(network: SeasonalEnsembleNetwork) -> bytes:
    """The bytes of ``checkpoint.pth`` for `network`: its ``state_dict``, saved by torch."""
    buffer = io.BytesIO()
    torch.save({k: torch.from_numpy(v) for k, v in network.state_dict().items()}, buffer)
    return buffer.getvalue()


def train(
    data_folder: Path | None, config: ModelConfig, progress: Progress = print
) -> tuple[SeasonalEnsembleModel, dict[str, int]]:
    """A model trained from scratch, and the names of the real traces it saw."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    real = _real_traces(data_folder, config) if data_folder is not None else []
    progress(f"{len(real)} real traces; generating {config.synthetic_series} synthetic ones")
    fake = [
        Series(
            f"synthetic-{i:04d}",
            np.arange(17 * synthetic.DAY, dtype=np.int64) * synthetic.STEP,
            synthetic.trace(np.random.default_rng([config.seed, i])),
        )
        for i in range(config.synthetic_series)
    ]
    started = time.perf_counter()
    dataset = make_dataset(real, fake, config, rng, progress)
    progress(
        f"built {len(dataset.targets)} training windows in {time.perf_counter() - started:.0f}s"
    )
    model = build_model(config)
    fit(model, dataset, config, progress, deadline=None)
    items = {trace.name: index for index, trace in enumerate(sorted(real, key=lambda s: s.name))}
    return model, items


def fine_tune(
    network: SeasonalEnsembleNetwork,
    config: ModelConfig,
    histories: Sequence[tuple[np.ndarray, np.ndarray]],
    max_seconds: float,
) -> SeasonalEnsembleNetwork:
    """A copy of `network` trained further on windows from `histories`, for at most
    `max_seconds` of CPU time (three epochs at a quarter of the learning rate otherwise)."""
    own = [Series(f"series-{i}", times, values) for i, (times, values) in enumerate(histories)]
    step = own[0].step
    if any(trace.step != step for trace in own):
        raise ValueError("fine-tuning series must share one step")
    tuning = dataclasses.replace(config, training_samples=2048, synthetic_fraction=0.0)
    rng = np.random.default_rng(config.seed)
    dataset = make_dataset(own, [], tuning, rng, lambda _: None, steps=((step, 1.0),))
    tuned = to_model(network, config)
    schedule = dataclasses.replace(config, epochs=3, learning_rate=config.learning_rate / 4)
    fit(tuned, dataset, schedule, lambda _: None, deadline=time.process_time() + max_seconds)
    return to_network(tuned, config)


def make_dataset(
    real: list[Series],
    fake: list[Series],
    config: ModelConfig,
    rng: np.random.Generator,
    progress: Progress,
    steps: Sequence[tuple[int, float]] = STEP_MIX,
) -> Dataset:
    parts_features: list[features.Features] = []
    parts_targets: list[np.ndarray] = []
    for step, share in steps:
        count = round(config.training_samples * share)
        pools = [
            [resample(trace, step) for trace in pool if 0 < trace.step <= step]
            for pool in (real, fake)
        ]
        pools = [[trace for trace in pool if _usable(trace, step, config)] for pool in pools]
        if not any(pools):
            continue
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            block, last_times, targets = _draw(pools, size, step, config, rng)
            built = features.build(block, step, last_times, config)
            scaled = (targets - built.center) / built.scale
            parts_features.append(built)
            parts_targets.append(
                np.clip(scaled, -features.TARGET_CLIP, features.TARGET_CLIP).astype(np.float32)
            )
        progress(
            f"  step {step:>4}s: {count} windows from {len(pools[0])} real, "
            f"{len(pools[1])} synthetic traces"
        )
    merged = features.Features(
        *(
            np.concatenate([getattr(part, field.name) for part in parts_features])
            for field in dataclasses.fields(features.Features)
        )
    )
    return Dataset(merged, np.concatenate(parts_targets))


def fit(
    model: SeasonalEnsembleModel,
    dataset: Dataset,
    config: ModelConfig,
    progress: Progress,
    deadline: float | None,
) -> None:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        _fit(model, dataset, config, progress, deadline)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(previous_threads)
    model.eval()


def _fit(
    model: SeasonalEnsembleModel,
    dataset: Dataset,
    config: ModelConfig,
    progress: Progress,
    deadline: float | None,
) -> None:
    tensors = [
        torch.from_numpy(dataset.features.candidates),
        torch.from_numpy(dataset.features.errors),
        torch.from_numpy(dataset.features.recent),
        torch.from_numpy(dataset.features.context),
    ]
    targets = torch.from_numpy(dataset.targets)
    quantiles = torch.tensor(config.quantiles, dtype=torch.float32)
    count = len(targets)
    batches = max(1, count // config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * batches
    )
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for batch in range(batches):
            index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
            loss = pinball_loss(model(*(t[index] for t in tensors)), targets[index], quantiles)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
            if deadline is not None and time.process_time() > deadline:
                progress(f"stopped at the CPU-time bound in epoch {epoch + 1}")
                return
        progress(f"epoch {epoch + 1}/{config.epochs}: quantile loss {total / batches:.4f}")


def _real_traces(folder: Path, config: ModelConfig) -> list[Series]:
    traces = []
    for trace in series_module.read_folder(folder):
        keep = len(trace) - math.ceil(config.holdout_days * 86400 / trace.step)
        if keep > 0:
            traces.append(trace.head(keep))
    return traces


def _usable(trace: Series, step: int, config: ModelConfig) -> bool:
    period = features.period_of(step)
    return len(trace) >= config.min_history_days * period + config.prediction_length


def _draw(
    pools: list[list[Series]], size: int, step: int, config: ModelConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    period = features.period_of(step)
    length = config.context_steps(step)
    horizon = config.prediction_length
    lowest = math.ceil(config.min_history_days * period)
    block = np.full((size, length), np.nan)
    targets = np.full((size, horizon), np.nan)
    last_times = np.zeros(size, dtype=np.int64)
    for row in range(size):
        pool = (
            pools[1]
            if (not pools[0] or (pools[1] and rng.random() < config.synthetic_fraction))
            else pools[0]
        )
        trace = pool[int(rng.integers(len(pool)))]
        origin = int(rng.integers(lowest, len(trace) - horizon + 1))
        history = trace.values[max(0, origin - length) : origin]
        block[row, length - len(history) :] = history
        targets[row] = trace.values[origin : origin + horizon]
        last_times[row] = trace.timestamps[origin - 1]
    return block, last_times, targets
