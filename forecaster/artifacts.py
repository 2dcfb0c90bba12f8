"""The model folder: the seed's layout, so `kubectl create configmap --from-file=<dir>` works.

- ``checkpoint.pth``: the network's ``state_dict`` (torch zip format, loaded weights-only);
- ``estimator_config.yaml``: `ModelConfig` (format version, step, context and prediction
  lengths, quantiles, every hyper-parameter);
- ``item2id.json``: the real traces the model was trained on, name -> id. The model has no
  per-series embedding, so it forecasts series it has never seen; the file is provenance.

Loading never guesses: a missing, unreadable, corrupt or incompatible file raises
`ArtifactError` naming the file and the problem.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from forecaster import features
from forecaster.config import ModelConfig
from forecaster.errors import ArtifactError
from forecaster.model import SeasonalEnsembleModel

CHECKPOINT = "checkpoint.pth"
CONFIG = "estimator_config.yaml"
ITEMS = "item2id.json"


def default_path() -> Path:
    """The pretrained model shipped inside the package."""
    return Path(str(resources.files("forecaster") / "default"))


def build_model(config: ModelConfig) -> SeasonalEnsembleModel:
    return SeasonalEnsembleModel(
        candidates=len(config.candidates),
        horizon=config.prediction_length,
        short_horizon=config.short_horizon,
        quantiles=config.quantiles,
        recent_window=config.recent_window,
        context_features=features.CONTEXT_FEATURES,
        hidden_size=config.hidden_size,
        temperature=config.temperature,
    )


def save(
    model: SeasonalEnsembleModel, config: ModelConfig, items: dict[str, int], folder: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, buffer)
    (folder / CHECKPOINT).write_bytes(buffer.getvalue())
    (folder / CONFIG).write_text(
        "# predictive-metrics-adapter forecaster: hyper-parameters of checkpoint.pth\n"
        + yaml.safe_dump(config.to_dict(), sort_keys=True)
    )
    (folder / ITEMS).write_text(json.dumps(items, indent=1, sort_keys=True) + "\n")


def load(folder: Path) -> tuple[SeasonalEnsembleModel, ModelConfig, dict[str, int]]:
    if not folder.is_dir():
        raise ArtifactError(folder, "is not a model folder (no such directory)")
    config = _load_config(folder / CONFIG)
    items = _load_items(folder / ITEMS)
    model = build_model(config)
    path = folder / CHECKPOINT
    state = _read(path, lambda data: torch.load(io.BytesIO(data), weights_only=True))
    if not isinstance(state, dict):
        raise ArtifactError(path, "does not hold a state_dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            path,
            f"does not match {CONFIG}: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}",
        )
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            raise ArtifactError(
                path,
                f"{key} has shape {tuple(getattr(state[key], 'shape', ()))}, "
                f"{CONFIG} implies {tuple(tensor.shape)}",
            )
    model.load_state_dict(state)
    model.eval()
    return model, config, items


def _load_config(path: Path) -> ModelConfig:
    document = _read(path, lambda data: yaml.safe_load(data.decode()))
    try:
        return ModelConfig.from_dict(document)
    except ValueError as exc:
        raise ArtifactError(path, f"incompatible: {exc}") from exc


def _load_items(path: Path) -> dict[str, int]:
    items = _read(path, lambda data: json.loads(data.decode()))
    if not isinstance(items, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in items.items()
    ):
        raise ArtifactError(path, "must be a JSON object of series name -> integer id")
    return items


def _read(path: Path, parse: Any) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(path, "is missing") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        return parse(data)
    except Exception as exc:  # yaml, json, zip and pickle errors all mean "corrupt"
        raise ArtifactError(path, f"is corrupt ({type(exc).__name__}: {exc})") from exc
