"""The protobuf wire format, read field by field: enough for checkpoint files (TensorFlow's bundle entries,
MindSpore's checkpoints) without either framework or generated code."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5


@dataclass
class Fields:
    """A message's fields by number, each a list of raw values (ints for varints and fixed, bytes for lengths)."""

    values: dict[int, list[int | bytes]] = field(default_factory=dict)

    def int(self, number: int, default: int) -> int:
        found = self.values.get(number)
        if not found:
            return default
        value = found[-1]
        if not isinstance(value, int):
            raise ValueError(f"field {number} is not a number")
        return value

    def ints(self, number: int) -> list[int]:
        """A repeated integer field, written unpacked or packed."""
        out: list[int] = []
        for value in self.values.get(number, []):
            if isinstance(value, int):
                out.append(value)
            else:
                pos = 0
                while pos < len(value):
                    item, pos = read_varint(value, pos)
                    out.append(item)
        return out

    def bytes(self, number: int) -> bytes | None:
        found = self.values.get(number)
        if not found:
            return None
        value = found[-1]
        if not isinstance(value, bytes):
            raise ValueError(f"field {number} is not a byte string")
        return value

    def message(self, number: int) -> Fields | None:
        raw = self.bytes(number)
        return None if raw is None else parse_fields(raw)

    def messages(self, number: int) -> list[Fields]:
        return [parse_fields(v) for v in self.values.get(number, []) if isinstance(v, bytes)]


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at `pos`; IndexError when the data ends inside it."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError("the data ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def iter_fields(data: bytes | memoryview):
    """Yield (field number, wire type, value, end position) for each field of a serialized message."""
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == FIXED64:
            if pos + 8 > len(data):
                raise IndexError("the data ends inside a fixed64")
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == FIXED32:
            if pos + 4 > len(data):
                raise IndexError("the data ends inside a fixed32")
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise IndexError("a length-delimited field runs past the end")
            value, pos = bytes(data[pos : pos + size]), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value, pos


def parse_fields(data: bytes | memoryview) -> Fields:
    """Every field of a serialized message (IndexError / ValueError when it is not one)."""
    fields = Fields()
    for number, _, value, _ in iter_fields(data):
        fields.values.setdefault(number, []).append(value)
    return fields
