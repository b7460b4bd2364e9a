"""Read a TensorFlow checkpoint (the TensorBundle format Google's BERT releases use) without TensorFlow.

A checkpoint `PREFIX` is `PREFIX.index`, a LevelDB-style table of uncompressed blocks mapping each variable name to
a BundleEntryProto (dtype, shape, shard, offset, size, checksum), and `PREFIX.data-0000N-of-0000M`, the raw
little-endian tensor bytes. Only what BERT checkpoints hold is read: whole (unsliced) tensors of plain dtypes.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from bertbench.errors import UsageError
from bertbench.models.protobuf import Fields, parse_fields, read_varint

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type + masked crc32c
# TensorFlow's DataType numbers for the dtypes a checkpoint of weights holds
DTYPES = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    19: np.dtype("<f2"),
}
DT_BFLOAT16 = 14
DT_STRING = 7
CRC_MASK_DELTA = 0xA282EAD8
OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the mark of a TF2 object-based checkpoint


class CheckpointFormatError(UsageError):
    """A checkpoint that cannot be read or converted: one line naming the file (and the tensor), exit 2."""


@dataclass(frozen=True)
class BundleEntry:
    """Where one variable's bytes are, and what they are."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # masked, as TensorFlow stores it


def masked_crc32c(data: bytes | memoryview) -> int:
    """LevelDB's and TensorFlow's masked CRC32C (a CRC of data that holds CRCs must not look like one)."""
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def _block(index: bytes, offset: int, size: int, where: Path) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(index):
        raise CheckpointFormatError(f"{where}: truncated (a block runs past the end of the file)")
    if index[end] != 0:
        raise CheckpointFormatError(f"{where}: compressed table blocks are not supported (type {index[end]})")
    stored = struct.unpack_from("<I", index, end + 1)[0]
    if masked_crc32c(index[offset : end + 1]) != stored:
        raise CheckpointFormatError(f"{where}: a table block's checksum does not match (a damaged index)")
    return index[offset:end]


def _block_entries(block: bytes, where: Path) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of one table block: prefix-compressed keys, then the restart array."""
    if len(block) < 4:
        raise CheckpointFormatError(f"{where}: a table block is too short")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise CheckpointFormatError(f"{where}: a table block's restart array is corrupt")
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_size, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > end:
            raise CheckpointFormatError(f"{where}: a table entry is corrupt")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_size]))
        pos += value_size
    return entries


def _shape(fields: Fields) -> tuple[int, ...]:
    dims = []
    for dim in fields.messages(2):
        dims.append(dim.int(1, 0))
    return tuple(dims)


def read_index(index_path: Path) -> tuple[int, list[BundleEntry]]:
    """(number of data shards, every variable's entry) of a checkpoint's `.index` file."""
    data = index_path.read_bytes()
    if len(data) < FOOTER_BYTES:
        raise CheckpointFormatError(f"{index_path}: too short for a TensorFlow checkpoint index")
    footer = data[-FOOTER_BYTES:]
    low, high = struct.unpack_from("<II", footer, FOOTER_BYTES - 8)
    if (high << 32 | low) != TABLE_MAGIC:
        raise CheckpointFormatError(f"{index_path}: not a TensorFlow checkpoint index (bad magic number)")
    try:
        _, pos = read_varint(footer, 0)  # the metaindex block, empty in a bundle
        _, pos = read_varint(footer, pos)
        index_offset, pos = read_varint(footer, pos)
        index_size, _ = read_varint(footer, pos)
        shards, entries = 1, []
        for _, handle in _block_entries(_block(data, index_offset, index_size, index_path), index_path):
            offset, pos = read_varint(handle, 0)
            size, _ = read_varint(handle, pos)
            for key, value in _block_entries(_block(data, offset, size, index_path), index_path):
                fields = parse_fields(value)
                if key == b"":  # the header: shards, then endianness (0 little, 1 big)
                    shards = fields.int(1, 1)
                    if fields.int(2, 0) != 0:
                        raise CheckpointFormatError(f"{index_path}: a big-endian checkpoint (not supported)")
                    continue
                if key.startswith(b"\x00"):  # the keys of a partitioned variable's slices
                    raise CheckpointFormatError(f"{index_path}: holds partitioned (sliced) variables (not supported)")
                name = key.decode("utf-8")
                if name == OBJECT_GRAPH:
                    raise CheckpointFormatError(
                        f"{index_path}: a TensorFlow 2 object-based checkpoint, not a TF1 BERT checkpoint"
                    )
                if fields.messages(7):
                    raise CheckpointFormatError(f"{index_path}: {name} is stored in slices (not supported)")
                shape = fields.message(2)
                crc = fields.values.get(6)
                entries.append(
                    BundleEntry(
                        name,
                        fields.int(1, 0),
                        _shape(shape) if shape is not None else (),
                        fields.int(3, 0),
                        fields.int(4, 0),
                        fields.int(5, 0),
                        fields.int(6, 0) if crc else None,
                    )
                )
    except (IndexError, UnicodeDecodeError, ValueError, struct.error) as exc:
        raise CheckpointFormatError(f"{index_path}: corrupt checkpoint index ({exc})") from None
    return shards, entries


def data_file(prefix: Path, shard: int, shards: int) -> Path:
    """The data shard `shard` of checkpoint `prefix` (TensorFlow's naming)."""
    return prefix.parent / f"{prefix.name}.data-{shard:05d}-of-{shards:05d}"


def read_checkpoint(prefix: Path, wanted: Callable[[str], bool] | None = None) -> dict[str, np.ndarray]:
    """The variables of TensorFlow checkpoint `prefix` (`…/bert_model.ckpt`) as numpy arrays: all of them, or those
    `wanted` names (the shards are mapped, not read whole: optimizer slots triple a trained checkpoint's size)."""
    index_path = prefix.parent / f"{prefix.name}.index"
    shards, entries = read_index(index_path)
    tensors: dict[str, np.ndarray] = {}
    with contextlib.ExitStack() as stack:
        mapped: dict[int, mmap.mmap | bytes] = {}
        for entry in entries:
            if wanted is not None and not wanted(entry.name):
                continue
            if entry.shard >= shards:
                raise CheckpointFormatError(f"{index_path}: {entry.name} is in shard {entry.shard} of {shards}")
            path = data_file(prefix, entry.shard, shards)
            if entry.shard not in mapped:
                if not path.exists():
                    raise CheckpointFormatError(f"{path}: missing (named by {index_path})")
                handle = stack.enter_context(open(path, "rb"))
                size = path.stat().st_size
                mapped[entry.shard] = (
                    b"" if size == 0 else stack.enter_context(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
                )
            data = mapped[entry.shard]
            if entry.offset + entry.size > len(data):
                raise CheckpointFormatError(
                    f"{path}: truncated ({entry.name} needs bytes {entry.offset}-{entry.offset + entry.size}, "
                    f"the file has {len(data)})"
                )
            raw = data[entry.offset : entry.offset + entry.size]
            if entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
                raise CheckpointFormatError(f"{path}: {entry.name}'s checksum does not match (a damaged data file)")
            tensors[entry.name] = _array(raw, entry, path)
    return tensors


BFLOAT16 = "bfloat16"  # no numpy dtype: widened to float32 on reading


def tensor_from_bytes(raw: bytes, dtype: np.dtype | str, shape: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    """A tensor's little-endian bytes as an array of `shape` (bfloat16 widened to float32); a byte count that does
    not fit the shape is refused naming the file and the tensor."""
    count = math.prod(shape)  # Python ints: a hostile shape cannot wrap around
    itemsize = 2 if dtype == BFLOAT16 else np.dtype(dtype).itemsize
    if len(raw) != itemsize * count:
        raise CheckpointFormatError(f"{path}: {name} holds {len(raw)} bytes for shape {shape}")
    if dtype == BFLOAT16:
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _array(raw: bytes, entry: BundleEntry, path: Path) -> np.ndarray:
    dtype = BFLOAT16 if entry.dtype == DT_BFLOAT16 else DTYPES.get(entry.dtype)
    if dtype is None:
        raise CheckpointFormatError(f"{path}: {entry.name} has TensorFlow dtype {entry.dtype} (not a weight type)")
    return tensor_from_bytes(raw, dtype, entry.shape, entry.name, path)
