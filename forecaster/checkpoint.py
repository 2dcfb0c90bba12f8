"""Reading ``checkpoint.pth`` without torch: the torch zip format, unpickled from a closed list.

``torch.save`` writes a zip archive of stored (uncompressed) records under one folder:
``data.pkl``, the pickled ``state_dict``, whose tensors name their storage by key;
``data/<key>``, each storage's raw bytes; ``byteorder``; and version records this reader does
not need. `read_state` turns it into ``{name: numpy array}``.

A pickle is a program: whatever globals it names, a plain unpickler imports and calls. This one
resolves only what a ``state_dict`` of float tensors needs (`ALLOWED_GLOBALS`: the ordered dict,
torch's tensor and parameter rebuilders, the float storage types), each mapped to a numpy
stand-in; any other global raises `RefusedGlobal` naming it, before anything is called. So a
crafted file cannot run code here (``torch.load(weights_only=True)`` had the same aim, with
torch's larger list).

Must not import torch (import-linter enforces it); writing a checkpoint is training's job
(`forecaster.training`).
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that no checkpoint of this model needs."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(
            f"it names the global {module}.{name}, which no checkpoint needs (refused, not loaded)"
        )
        self.module = module
        self.name = name


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and its kin: the element type of a storage."""

    def __init__(self, dtype: type[np.floating]) -> None:
        self.dtype = np.dtype(dtype)


_STORAGE_TYPES = {
    "FloatStorage": _StorageType(np.float32),
    "DoubleStorage": _StorageType(np.float64),
    "HalfStorage": _StorageType(np.float16),
}


def _rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a (copied) view of a storage."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise pickle.UnpicklingError("a tensor's storage is not a storage record")
    if not _ints(size) or not _ints(stride) or len(size) != len(stride):
        raise pickle.UnpicklingError(f"a tensor has size {size!r} and stride {stride!r}")
    if not isinstance(offset, int) or offset < 0 or any(s < 0 for s in (*size, *stride)):
        raise pickle.UnpicklingError("a tensor has a negative offset, size or stride")
    count = math.prod(size)
    if count == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= len(storage) or count > len(storage):
        raise pickle.UnpicklingError(
            f"a tensor of size {tuple(size)} reaches past its storage of {len(storage)} elements"
        )
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.array(view)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> np.ndarray:
    """``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError("a parameter holds no tensor")
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
}
"""Every global a checkpoint may name, and what it stands for here."""


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storage: Any) -> None:
        super().__init__(io.BytesIO(data))
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent record {pid!r:.80}")
        _, kind, key, _location, count = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str):
            raise pickle.UnpicklingError(f"storage record {key!r:.40} is malformed")
        if not isinstance(count, int):
            raise pickle.UnpicklingError(f"storage {key} has no element count")
        return self._storage(key, kind.dtype, count)


def read_state(data: bytes) -> dict[str, np.ndarray]:
    """The ``state_dict`` in the bytes of a checkpoint, as numpy arrays.

    Raises `RefusedGlobal` for a pickle that names anything outside `ALLOWED_GLOBALS`, and
    ``zipfile.BadZipFile``, ``pickle.UnpicklingError``, ``KeyError`` or ``ValueError`` for a
    file that is not a well-formed checkpoint.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        records = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in records if name.endswith("/data.pkl") and name.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError("not a torch zip checkpoint (no single <folder>/data.pkl)")
        prefix = pickles[0].removesuffix("data.pkl")

        def read(name: str) -> bytes:
            info = records.get(prefix + name)
            if info is None:
                raise KeyError(f"no record {prefix + name}")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"record {info.filename} is compressed; torch stores records")
            return archive.read(info)

        order = read("byteorder").decode() if prefix + "byteorder" in records else "little"
        if order not in ("little", "big"):
            raise ValueError(f"unknown byte order {order!r:.20}")
        storages: dict[str, np.ndarray] = {}

        def storage(key: str, dtype: np.dtype[Any], count: int) -> np.ndarray:
            if key not in storages:
                raw = read(f"data/{key}")
                element = dtype.newbyteorder("<" if order == "little" else ">")
                if len(raw) != count * element.itemsize:
                    raise ValueError(
                        f"storage {key} holds {len(raw)} bytes, not {count} elements of {dtype}"
                    )
                storages[key] = np.frombuffer(raw, dtype=element).astype(dtype)
            if storages[key].dtype != dtype or len(storages[key]) != count:
                raise ValueError(f"storage {key} is named with two types or sizes")
            return storages[key]

        state = _Unpickler(read("data.pkl"), storage).load()
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(array, np.ndarray) for name, array in state.items()
    ):
        raise ValueError("does not hold a state_dict (a mapping of names to tensors)")
    return dict(state)


def _ints(values: Any) -> bool:
    return isinstance(values, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    )
