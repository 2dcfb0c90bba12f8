"""Training: a 2-epoch smoke run, seeded reproducibility, bounded fine-tuning."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from forecaster import load_forecaster
from forecaster.config import ModelConfig
from forecaster.model import SeasonalEnsembleModel
from forecaster.predictor import Forecaster
from forecaster.training import to_network, train

SMALL = ModelConfig(training_samples=1024, epochs=2, synthetic_series=12, batch_size=128)


@dataclasses.dataclass(frozen=True)
class Trained:
    model: SeasonalEnsembleModel
    items: dict[str, int]
    lines: list[str]  # the progress it reported


@pytest.fixture(scope="module")
def small() -> Trained:
    """SMALL trained once with the default seed, for the smoke run and the seed comparison."""
    lines: list[str] = []
    model, items = train(None, SMALL, progress=lines.append)
    return Trained(model, items, lines)


def test_two_epoch_smoke_run_trains_and_forecasts(small: Trained) -> None:
    model, items, lines = small.model, small.items, small.lines
    assert items == {}
    assert any(line.startswith("epoch 2/2: quantile loss") for line in lines)
    loss = float(lines[-1].rsplit(" ", 1)[1])
    assert np.isfinite(loss)
    forecaster = Forecaster(to_network(model, SMALL), SMALL, items, "smoke")
    times = np.arange(4 * 288, dtype=np.int64) * 300
    out = forecaster.predict(times, 50 + 10 * np.sin(np.arange(len(times)) * 2 * np.pi / 288), 48)
    assert out.shape == (3, 48)
    assert np.all(np.isfinite(out))


def test_same_seed_same_weights_other_seed_other_weights(small: Trained) -> None:
    first = small.model
    second, _ = train(None, SMALL, progress=lambda _: None)
    third, _ = train(None, dataclasses.replace(SMALL, seed=7), progress=lambda _: None)
    a, b, c = (model.state_dict() for model in (first, second, third))
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)


def test_fine_tuning_returns_a_working_copy_and_leaves_the_original() -> None:
    base = load_forecaster()
    before = base.model.state_dict()
    times = np.arange(6 * 288, dtype=np.int64) * 300
    values = 200 + 80 * np.sin(np.arange(len(times)) * 2 * np.pi / 288)
    tuned = base.fine_tune([(times, values)], max_seconds=5)
    assert tuned is not base
    assert all(np.array_equal(before[k], v) for k, v in base.model.state_dict().items())
    assert not all(np.array_equal(before[k], v) for k, v in tuned.model.state_dict().items())
    assert "fine-tuned" in tuned.source
    assert np.all(np.isfinite(tuned.predict(times, values, 48)))
