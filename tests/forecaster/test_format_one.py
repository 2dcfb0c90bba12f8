"""A model folder of format 1 (the shipped model before format 2) still loads and forecasts
exactly as it did: users' fine-tuned folders survive an upgrade.

`data/format-1/` is the format-1 default folder as it shipped; `data/format-1-forecast.json`
holds what that release's code forecast from it for the bundled demo trace.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from forecaster import load_forecaster
from forecaster.config import FORMAT_VERSION, ModelConfig
from forecaster.series import read_csv

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def test_a_format_one_folder_forecasts_as_that_release_did() -> None:
    recorded = json.loads((DATA / "format-1-forecast.json").read_text())
    trace = read_csv(ROOT / "adapter" / "data" / "demo-trace.csv")
    cut = recorded["history_steps"]
    model = load_forecaster(DATA / "format-1")
    assert model.config.format_version == FORMAT_VERSION
    assert model.config.horizon_parts() == ((0, 12), (12, 48))
    forecast = model.predict(
        trace.timestamps[:cut], trace.values[:cut], horizon=48, quantiles=recorded["quantiles"]
    )
    np.testing.assert_allclose(forecast, np.array(recorded["forecast"]), rtol=1e-9, atol=0)


def test_a_format_one_config_cannot_claim_a_lead_part() -> None:
    with pytest.raises(ValueError, match="format 1 has no lead_horizon"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "format_version": 1, "lead_horizon": 3})


def test_an_unknown_format_is_refused_by_number() -> None:
    with pytest.raises(ValueError, match="format_version is 7; this version reads 1, 2"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "format_version": 7})
