"""Read a MindSpore checkpoint (`.ckpt`) without MindSpore.

The file is MindSpore's `Checkpoint` protobuf: repeated `value` (1) entries, each a `tag` (1, the parameter name) and a
`tensor` (2: `dims` 1, `tensor_type` 2 as a name such as "Float32", `tensor_content` 3, little-endian bytes). A
tensor too large for one entry continues in the next entries of the same tag. MindSpore 2.3+ may end the file with
`crc_num` and the zlib CRC-32 of what precedes it in 10 bytes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bertbench.models.protobuf import iter_fields, parse_fields
from bertbench.models.tf_checkpoint import BFLOAT16, CheckpointFormatError, tensor_from_bytes

CRC_MARK = b"crc_num"
CRC_DIGITS = 10
TENSOR_TYPES = {
    "Float32": np.dtype("<f4"),
    "Float16": np.dtype("<f2"),
    "Float64": np.dtype("<f8"),
    "Int8": np.dtype("i1"),
    "UInt8": np.dtype("u1"),
    "Int16": np.dtype("<i2"),
    "Int32": np.dtype("<i4"),
    "Int64": np.dtype("<i8"),
    "UInt16": np.dtype("<u2"),
    "UInt32": np.dtype("<u4"),
    "UInt64": np.dtype("<u8"),
    "Bool": np.dtype("?"),
}


def _body(data: bytes, path: Path) -> bytes:
    """The protobuf part of the file, its CRC checked where MindSpore appended one."""
    tail = len(CRC_MARK) + CRC_DIGITS
    if len(data) >= tail and data[-tail:-CRC_DIGITS] == CRC_MARK:
        body, digits = data[:-tail], data[-CRC_DIGITS:]
        stored = int(digits) if digits.isdigit() else int.from_bytes(digits, "big")
        if stored != zlib.crc32(body):
            raise CheckpointFormatError(f"{path}: its CRC does not match its contents (a damaged checkpoint)")
        return body
    return data


def read_mindspore_checkpoint(path: Path, wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The numeric parameters of MindSpore checkpoint `path` as numpy arrays: all, or those `wanted` names (optimizer
    state is never decoded then); string entries are skipped."""
    data = _body(path.read_bytes(), path)
    pieces: dict[str, list[bytes]] = {}
    kinds: dict[str, tuple[str, tuple[int, ...]]] = {}
    last = None
    try:
        for number, _, value, _ in iter_fields(data):
            if number != 1 or not isinstance(value, bytes):
                raise ValueError(f"field {number} where a checkpoint holds only values")
            entry = parse_fields(value)
            tag = entry.bytes(1)
            tensor = entry.message(2)
            if tag is None or tensor is None:
                raise ValueError("a value without its name or tensor")
            name = tag.decode("utf-8")
            kind = (tensor.bytes(2) or b"").decode("utf-8")
            dims = tuple(tensor.ints(1))
            if name in kinds and (name != last or kinds[name] != (kind, dims)):
                # a large tensor continues in the entries right after its first, with the same type and shape
                raise CheckpointFormatError(f"{path}: {name} appears twice")
            kinds.setdefault(name, (kind, dims))
            pieces.setdefault(name, []).append(tensor.bytes(3) or b"")
            last = name
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointFormatError(f"{path}: not a MindSpore checkpoint ({exc})") from None
    if not pieces:
        raise CheckpointFormatError(f"{path}: not a MindSpore checkpoint (no parameters)")
    tensors = {}
    for name, (kind, dims) in kinds.items():
        if kind == "str" or (wanted is not None and not wanted(name)):
            continue
        raw = b"".join(pieces[name])
        tensors[name] = _array(raw, kind, dims, name, path)
    return tensors


def _array(raw: bytes, kind: str, dims: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    dtype = BFLOAT16 if kind == "BFloat16" else TENSOR_TYPES.get(kind)
    if dtype is None:
        raise CheckpointFormatError(f"{path}: {name} has tensor type {kind!r} (not a weight type)")
    return tensor_from_bytes(raw, dtype, () if dims in ((), (0,)) else dims, name, path)
