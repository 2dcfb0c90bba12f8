"""The model folder: the seed's layout, so `kubectl create configmap --from-file=<dir>` works.

- ``checkpoint.pth``: the network's ``state_dict`` (torch zip format; read here without torch,
  by `forecaster.checkpoint`, which refuses any pickle global a checkpoint does not need);
- ``estimator_config.yaml``: `ModelConfig` (format version, step, context and prediction
  lengths, quantiles, every hyper-parameter);
- ``item2id.json``: the real traces the model was trained on, name -> id. The model has no
  per-series embedding, so it forecasts series it has never seen; the file is provenance.

Loading never guesses: a missing, unreadable, corrupt or incompatible file raises
`ArtifactError` naming the file and the problem. A folder of an older format that
`forecaster.config` still reads loads as the current format (see there). Loading is serving's
path and must not import torch (import-linter enforces it); `write` takes the checkpoint's
bytes ready-made, from `forecaster.training`, which owns torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from forecaster import checkpoint
from forecaster.config import FORMAT_VERSION, ModelConfig
from forecaster.errors import ArtifactError
from forecaster.network import SeasonalEnsembleNetwork, parameter_shapes

CHECKPOINT = "checkpoint.pth"
CONFIG = "estimator_config.yaml"
ITEMS = "item2id.json"


def default_path() -> Path:
    """The pretrained model shipped inside the package."""
    return Path(str(resources.files("forecaster") / "default"))


def write(
    folder: Path, checkpoint_bytes: bytes, config: ModelConfig, items: dict[str, int]
) -> None:
    """Write a model folder from a checkpoint's bytes (`forecaster.training.encode`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHECKPOINT).write_bytes(checkpoint_bytes)
    (folder / CONFIG).write_text(
        "# predictive-metrics-adapter forecaster: hyper-parameters of checkpoint.pth\n"
        + yaml.safe_dump(config.to_dict(), sort_keys=True)
    )
    (folder / ITEMS).write_text(json.dumps(items, indent=1, sort_keys=True) + "\n")


def load(folder: Path) -> tuple[SeasonalEnsembleNetwork, ModelConfig, dict[str, int]]:
    if not folder.is_dir():
        raise ArtifactError(folder, "is not a model folder (no such directory)")
    config = _load_config(folder / CONFIG)
    items = _load_items(folder / ITEMS)
    path = folder / CHECKPOINT
    state = _read(path, checkpoint.read_state)
    expected = parameter_shapes(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            path,
            f"does not match {CONFIG}: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}",
        )
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise ArtifactError(
                path, f"{key} has shape {state[key].shape}, {CONFIG} implies {shape}"
            )
    if config.format_version != FORMAT_VERSION:
        # An older format is the current network with what was added since at zero.
        config = dataclasses.replace(config, format_version=FORMAT_VERSION)
        state = {
            name: state[name] if name in state else np.zeros(shape, dtype=np.float32)
            for name, shape in parameter_shapes(config).items()
        }
    return SeasonalEnsembleNetwork(state, config), config, items


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


def _read(path: Path, parse: Callable[[bytes], Any]) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(path, "is missing") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        return parse(data)
    except checkpoint.RefusedGlobal as exc:
        raise ArtifactError(path, f"refused: {exc}") from exc
    except Exception as exc:  # yaml, json, zip and pickle errors all mean "corrupt"
        raise ArtifactError(path, f"is corrupt ({type(exc).__name__}: {exc})") from exc
