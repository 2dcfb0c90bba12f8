"""Reading checkpoints without torch: what torch.load reads, and nothing a checkpoint does not
need (a crafted pickle is refused by name, before anything in it runs)."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from forecaster import ArtifactError, load_forecaster
from forecaster.artifacts import CHECKPOINT, default_path
from forecaster.checkpoint import read_state

CALLS: list[str] = []


def record(word: str) -> str:
    """What a crafted checkpoint calls in these tests: proof that it ran, and nothing more."""
    CALLS.append(word)
    return word


class _Calls:
    """Pickles as a call of `function` on `argument` (the way a crafted file runs code)."""

    def __init__(self, function: Any, argument: str) -> None:
        self.function, self.argument = function, argument

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.function, (self.argument,)


def torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def with_pickle(checkpoint: bytes, payload: bytes) -> bytes:
    """`checkpoint` with its data.pkl replaced, every other record kept as torch wrote it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(checkpoint)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, payload if info.filename.endswith("/data.pkl") else data)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(default_path(), target)
    return target


def test_the_shipped_checkpoint_reads_as_torch_reads_it() -> None:
    data = (default_path() / CHECKPOINT).read_bytes()
    ours = read_state(data)
    theirs = torch.load(io.BytesIO(data), weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == np.float32
        assert np.array_equal(ours[name], tensor.numpy()), name


def test_views_shared_storages_and_other_float_types_read_as_torch_reads_them() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "transposed": base.t(),  # strides (1, 6)
        "slice": base[1:3, 2:5],  # an offset into the same storage
        "double": torch.linspace(-1, 1, 5, dtype=torch.float64),
        "half": torch.tensor([0.5, -2.0], dtype=torch.float16),
        "scalar": torch.tensor(3.5),
    }
    ours = read_state(torch_bytes(state))
    for name, tensor in state.items():
        assert ours[name].shape == tuple(tensor.shape), name
        assert np.array_equal(ours[name], tensor.numpy()), name


def test_a_plain_unpickler_runs_what_a_crafted_checkpoint_names_this_reader_refuses_it(
    folder: Path,
) -> None:
    path = folder / CHECKPOINT
    payload = pickle.dumps({"log_temperature": _Calls(record, "ran")}, protocol=2)
    CALLS.clear()
    pickle.loads(payload)  # noqa: S301 - what an unrestricted loader does with the file
    assert CALLS == ["ran"]

    CALLS.clear()
    path.write_bytes(with_pickle(path.read_bytes(), payload))
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT}: refused: it names the global ") as err:
        load_forecaster(folder)
    assert f"{__name__}.record" in str(err.value)
    assert CALLS == []


def test_a_checkpoint_that_would_run_a_shell_command_is_refused_by_name(folder: Path) -> None:
    path = folder / CHECKPOINT
    payload = pickle.dumps({"log_temperature": _Calls(os.system, "exit 3")}, protocol=2)
    path.write_bytes(with_pickle(path.read_bytes(), payload))
    with pytest.raises(
        ArtifactError, match=rf"{CHECKPOINT}: refused: .*{os.system.__module__}\.system"
    ):
        load_forecaster(folder)


def test_a_storage_shorter_than_its_tensor_is_corrupt(folder: Path) -> None:
    path = folder / CHECKPOINT
    out = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data[:-4] if info.filename.endswith("/data/3") else data)
    path.write_bytes(out.getvalue())
    with pytest.raises(ArtifactError, match=f"{CHECKPOINT}: is corrupt .*storage 3 holds"):
        load_forecaster(folder)
