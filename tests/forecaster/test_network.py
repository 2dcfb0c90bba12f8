"""The numpy network against the torch model of the same checkpoint, on the dev traces.

Serving runs `forecaster.network` (numpy, float64); training runs `forecaster.model` (torch).
Both read the shipped checkpoint (torch through ``torch.load``, numpy through
`forecaster.checkpoint`), and for every series of the dev traces (``../shared/data`` beside the
repository; where there are none, the bundled demo trace and seeded synthetic ones), resampled
to each step from 1 minute to 1 hour, at origins every 6 hours over the last 3 days, the
forecasts must agree:

- with torch computing in float64: within 1e-6 absolute in scale units (the units the network
  reads and writes: 1 is the series' in-sample mean absolute error of "same time yesterday"),
  on every quantile and every step of the horizon;
- with torch in float32, as served before: within 16 float32 ulps of the forecast's largest
  magnitude. That gap is float32's own rounding (7 digits, on outputs up to ~100 scale units);
  the float64 comparison is the one that shows the computation is the same.

And through the public API, at horizons of 1, 12 and 48 steps and interpolated quantiles, the
forecasts in the series' own units agree within 1e-6 relative to the forecast's magnitude.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from forecaster import Forecaster, features, load_forecaster, synthetic, training
from forecaster.artifacts import CHECKPOINT, default_path
from forecaster.config import ModelConfig
from forecaster.model import SeasonalEnsembleModel
from forecaster.network import SeasonalEnsembleNetwork
from forecaster.series import Series, read_csv, read_folder, resample

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT.parent / "shared" / "data"
STEPS = (60, 300, 900, 3600)
ORIGIN_EVERY_SECONDS = 6 * 3600
EVALUATION_DAYS = 3
ULPS = 16
FLOAT32_TOLERANCE = ULPS * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def traces() -> list[Series]:
    """The dev traces; where a checkout has none beside it, the bundled demo trace and 40
    seeded synthetic traces, so that the comparison always runs."""
    if not TRACES.is_dir():
        demo = read_csv(ROOT / "adapter" / "data" / "demo-trace.csv")
        generated = [
            Series(
                f"synthetic-{index}",
                np.arange(17 * synthetic.DAY, dtype=np.int64) * synthetic.STEP,
                synthetic.trace(np.random.default_rng([20261203, index])),
            )
            for index in range(40)
        ]
        return [demo, *generated]
    found = read_folder(TRACES)
    assert len(found) > 200, f"expected the dev traces in {TRACES}, found {len(found)} series"
    return found


@pytest.fixture(scope="module")
def served() -> Forecaster:
    return load_forecaster()


@pytest.fixture(scope="module")
def torch_models(served: Forecaster) -> dict[torch.dtype, SeasonalEnsembleModel]:
    """The shipped checkpoint as the torch code loaded it before: ``torch.load``, weights only."""
    state = torch.load(io.BytesIO((default_path() / CHECKPOINT).read_bytes()), weights_only=True)
    models = {}
    for dtype in (torch.float32, torch.float64):
        model = training.build_model(served.config)
        model.load_state_dict(state)
        models[dtype] = model.to(dtype).eval()
    return models


def origins(trace: Series, config: ModelConfig) -> Iterator[int]:
    """Every 6 hours over the last 3 days, newest first, where the model (not the fallback)
    forecasts: at least `min_history_days` of history."""
    every = max(1, ORIGIN_EVERY_SECONDS // trace.step)
    oldest = round(config.min_history_days * 86400 / trace.step)
    for back in range(0, EVALUATION_DAYS * 86400 // trace.step + 1, every):
        if len(trace) - back >= oldest:
            yield len(trace) - back


def histories(
    traces: list[Series], step: int, config: ModelConfig, latest_only: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(timestamps, values) of each trace at `step`, cut at each origin, as served."""
    cut = []
    for trace in traces:
        if not 0 < trace.step <= step:
            continue
        gridded = resample(trace, step)
        for origin in origins(gridded, config):
            start = max(0, origin - config.context_steps(step))
            cut.append((gridded.timestamps[start:origin], gridded.values[start:origin]))
            if latest_only:
                break
    return cut


def torch_forward(
    model: SeasonalEnsembleModel, dtype: torch.dtype, inputs: features.Features
) -> np.ndarray:
    arrays = (inputs.candidates, inputs.errors, inputs.recent, inputs.context)
    with torch.inference_mode():
        return model(*(torch.from_numpy(a).to(dtype) for a in arrays)).numpy().astype(np.float64)


@pytest.mark.timeout(300)  # the first one reads the dev traces (71 MB of CSV)
@pytest.mark.parametrize("step", STEPS)
def test_numpy_forward_is_the_torch_forward_on_every_dev_trace_forecast(
    traces: list[Series],
    served: Forecaster,
    torch_models: dict[torch.dtype, SeasonalEnsembleModel],
    step: int,
) -> None:
    config = served.config
    cut = histories(traces, step, config)
    assert len(cut) >= 50, f"only {len(cut)} forecasts at {step}s"
    length = config.context_steps(step)
    block = np.full((len(cut), length), np.nan)
    for row, (_, values) in enumerate(cut):
        block[row, length - len(values) :] = values
    last = np.array([times[-1] for times, _ in cut], dtype=np.int64)
    inputs = features.build(block, step, last, config)

    ours = served.model(inputs.candidates, inputs.errors, inputs.recent, inputs.context)
    exact = torch_forward(torch_models[torch.float64], torch.float64, inputs)
    single = torch_forward(torch_models[torch.float32], torch.float32, inputs)
    shape = (len(cut), len(config.quantiles), config.prediction_length)
    assert ours.shape == exact.shape == single.shape == shape
    assert np.all(np.isfinite(ours))

    assert np.max(np.abs(ours - exact)) <= 1e-6
    magnitude = np.maximum(1.0, np.max(np.abs(single), axis=(1, 2), keepdims=True))
    assert np.max(np.abs(ours - single) / magnitude) <= FLOAT32_TOLERANCE


class TorchForward(SeasonalEnsembleNetwork):
    """The network's interface, computed by a torch model: a forecaster served by torch."""

    def __init__(self, served: Forecaster, model: SeasonalEnsembleModel) -> None:
        super().__init__(served.model.state_dict(), served.config)
        self._model = model

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self._model(*(torch.from_numpy(a).to(torch.float64) for a in arrays))
        return np.asarray(out.numpy())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("step", STEPS)
def test_forecasts_through_the_api_match_torch_at_every_horizon(
    traces: list[Series],
    served: Forecaster,
    torch_models: dict[torch.dtype, SeasonalEnsembleModel],
    step: int,
) -> None:
    by_torch = Forecaster(
        TorchForward(served, torch_models[torch.float64]),
        served.config,
        served.items,
        "torch",
    )
    cut = histories(traces, step, served.config, latest_only=True)
    quantiles = (0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95)  # 0.2 and 0.8 are interpolated
    for horizon in (1, 12, 48):
        ours = served.predict_batch(cut, horizon, quantiles)
        theirs = by_torch.predict_batch(cut, horizon, quantiles)
        assert ours.shape == (len(cut), len(quantiles), horizon)
        magnitude = np.maximum(np.max(np.abs(theirs), axis=(1, 2), keepdims=True), 1e-300)
        assert np.max(np.abs(ours - theirs) / magnitude) <= 1e-6, horizon


@pytest.mark.parametrize("torch_present", [True, False], ids=["torch-installed", "torch-absent"])
def test_serving_never_imports_torch(torch_present: bool) -> None:
    """The server's modules, loading the model and forecasting: torch stays out of the process,
    and all of it works where torch cannot be imported at all (no ``train`` extra)."""
    script = textwrap.dedent(
        f"""
        import sys
        if not {torch_present}:
            sys.modules["torch"] = None  # import torch raises ImportError from here on
        import numpy as np
        import apiservice.__main__
        import apiservice.server
        import adapter
        import forecaster

        model = forecaster.load_forecaster()
        times = np.arange(14 * 288, dtype=np.int64) * 300
        values = 100 + 50 * np.sin(np.arange(len(times)) * 2 * np.pi / 288)
        assert model.predict(times, values, 48).shape == (3, 48)
        assert model.predict_batch([(times, values)] * 3, 12).shape == (3, 3, 12)
        assert model.forecast(times, values, 6).method == "model"
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "torch")
        assert loaded == ([] if {torch_present} else ["torch"]), loaded
        print("served without torch")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "served without torch" in done.stdout
