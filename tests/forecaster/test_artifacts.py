"""The model folder: the seed's layout, small enough for a ConfigMap, strict about damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from forecaster import ArtifactError, load_forecaster
from forecaster.artifacts import CHECKPOINT, CONFIG, ITEMS, default_path


def test_default_folder_has_the_seed_layout_and_fits_a_configmap() -> None:
    folder = default_path()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        [CHECKPOINT, CONFIG, ITEMS]
    )
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1024 * 1024
    config = yaml.safe_load((folder / CONFIG).read_text())
    for key in (
        "format_version",
        "step_seconds",
        "context_length",
        "prediction_length",
        "quantiles",
        "seed",
    ):
        assert key in config


def test_save_and_load_round_trip_gives_identical_forecasts(tmp_path: Path) -> None:
    original = load_forecaster()
    original.save(tmp_path / "copy")
    copy = load_forecaster(tmp_path / "copy")
    times = np.arange(5 * 288, dtype=np.int64) * 300
    values = 10 + np.sin(np.arange(len(times)) / 20)
    assert np.array_equal(original.predict(times, values, 48), copy.predict(times, values, 48))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(default_path(), target)
    return target


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such directory"):
        load_forecaster(tmp_path / "absent")


@pytest.mark.parametrize("name", [CHECKPOINT, CONFIG, ITEMS])
def test_missing_file_is_named(folder: Path, name: str) -> None:
    (folder / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name}: is missing"):
        load_forecaster(folder)


def test_corrupt_checkpoint_is_named(folder: Path) -> None:
    (folder / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT}: is corrupt"):
        load_forecaster(folder)


def test_incompatible_config_is_named(folder: Path) -> None:
    config = yaml.safe_load((folder / CONFIG).read_text())
    config["format_version"] = 99
    config["colour"] = "blue"
    (folder / CONFIG).write_text(yaml.safe_dump(config))
    with pytest.raises(
        ArtifactError, match=f"{CONFIG}: incompatible: unknown field 'colour'; format_version is 99"
    ):
        load_forecaster(folder)


def test_weights_that_do_not_match_the_config(folder: Path) -> None:
    config = yaml.safe_load((folder / CONFIG).read_text())
    config["hidden_size"] = 32
    (folder / CONFIG).write_text(yaml.safe_dump(config))
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT}: body.0.weight has shape"):
        load_forecaster(folder)


def test_broken_item_list(folder: Path) -> None:
    (folder / ITEMS).write_text('{"a": "b"}')
    with pytest.raises(ArtifactError, match=f"{ITEMS}: must be a JSON object"):
        load_forecaster(folder)


def test_the_model_configmap_in_deploy_is_the_shipped_model() -> None:
    """deploy/base/model feeds the model ConfigMap; it must not drift from the package's."""
    shipped = default_path()
    deployed = Path(__file__).resolve().parents[2] / "deploy" / "base" / "model"
    for name in (CHECKPOINT, CONFIG, ITEMS):
        assert (deployed / name).read_bytes() == (shipped / name).read_bytes(), name
