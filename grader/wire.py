"""Framed messages of plain data between the grader and a submission's process.

A frame is a 4-byte big-endian header length, a JSON header, then the raw bytes
of each array the header declares (C order, little-endian). Nothing is ever
unpickled: a reader decodes JSON and copies bytes into NumPy arrays of a dtype
from a short allow-list, after checking every declared size against a cap.
This module is imported on both sides, so it depends on NumPy only.
"""

from __future__ import annotations

import json
import math
import struct
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import numpy as np

MAX_HEADER_BYTES = 256 * 1024
MAX_FRAME_BYTES = 512 * 1024 * 1024
MAX_INT = 2**53  # JSON numbers beyond this are not plain data (and overflow float())
MAX_STRING = 4096
MAX_NAME = 256  # an array's name: "eval/batch_stats/running_mean" and the like
MAX_DEPTH = 8
ALLOWED_DTYPES = {"float32", "float64", "int32", "int64", "uint32", "bool"}
_LEN = struct.Struct(">I")


class WireError(ValueError):
    """A frame that is malformed, too large, or of a type the reader refuses."""


def _plain(value: Any, where: str, depth: int = 0) -> None:
    """Reject anything in a header that is not small, plain JSON data: bounded
    integers, strings and nesting, finite floats."""
    if depth > MAX_DEPTH:
        raise WireError(f"nesting deeper than {MAX_DEPTH} in {where}")
    if value is None or type(value) is bool:
        return
    if type(value) is int:
        if not -MAX_INT <= value <= MAX_INT:
            raise WireError(f"integer out of range in {where}")
        return
    if type(value) is str:
        if len(value) > MAX_STRING:
            raise WireError(f"string longer than {MAX_STRING} characters in {where}")
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise WireError(f"non-finite number in {where}")
        return
    if type(value) is list:
        for item in value:
            _plain(item, where, depth + 1)
        return
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or len(key) > MAX_STRING:
                raise WireError(f"non-string or overlong key in {where}")
            _plain(item, where, depth + 1)
        return
    raise WireError(f"unsupported value of type {type(value).__name__} in {where}")


def _encode_arrays(arrays: dict[str, np.ndarray]) -> tuple[list[dict[str, Any]], list[bytes]]:
    import numpy as np  # lazily: the grader starts its workers before it imports NumPy

    specs, blobs = [], []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        little = array.dtype.newbyteorder("<")
        if little.name not in ALLOWED_DTYPES:
            raise WireError(f"array {name!r} has dtype {array.dtype}, not one of {sorted(ALLOWED_DTYPES)}")
        specs.append({"name": name, "dtype": little.name, "shape": list(array.shape)})
        blobs.append(array.astype(little, copy=False).tobytes())
    return specs, blobs


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One frame holding ``header`` plus ``arrays`` (listed under header['arrays'])."""
    specs, blobs = _encode_arrays(arrays) if arrays else ([], [])
    body = json.dumps({**header, "arrays": specs}, allow_nan=False).encode()
    if len(body) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(body)} bytes exceeds {MAX_HEADER_BYTES}")
    return _LEN.pack(len(body)) + body + b"".join(blobs)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("channel closed in the middle of a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _np():  # noqa: ANN202
    import numpy

    return numpy


def _array_specs(header: dict[str, Any], budget: int) -> list[tuple[str, np.dtype, tuple[int, ...], int]]:
    specs = header.get("arrays")
    if type(specs) is not list:
        raise WireError("header has no list of arrays")
    out, total, names = [], 0, set()
    for spec in specs:
        if type(spec) is not dict or set(spec) != {"name", "dtype", "shape"}:
            raise WireError("array spec must have exactly name, dtype and shape")
        name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
        if type(name) is not str or name in names:
            raise WireError("array names must be distinct strings")
        if len(name) > MAX_NAME or not name.isprintable():
            # Names are quoted to students and instructors: no line breaks, escapes or
            # bidi controls (a variable named "\r\nScore: 100/100" must not forge a line).
            raise WireError(f"array name {name[:40]!r} is overlong or holds control characters")
        if dtype not in ALLOWED_DTYPES:
            raise WireError(f"array {name!r} has a refused dtype {dtype!r}")
        if type(shape) is not list or len(shape) > 8 or any(type(d) is not int or d < 0 for d in shape):
            raise WireError(f"array {name!r} has an invalid shape")
        np_dtype = _np().dtype(dtype).newbyteorder("<")
        nbytes = math.prod(shape) * np_dtype.itemsize
        total += nbytes
        if total > budget:
            raise WireError(f"frame declares more than the {budget} bytes of arrays it may send")
        names.add(name)
        out.append((name, np_dtype, tuple(shape), nbytes))
    return out


def read(stream: BinaryIO, budget: int = MAX_FRAME_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The next frame from ``stream``, or None at a clean end of stream.

    ``budget``: how many bytes of arrays this frame may declare (the reader of
    an untrusted stream passes what is left of the sender's allowance), checked
    before a single array byte is read.
    """
    prefix = stream.read(_LEN.size)
    if not prefix:
        return None
    if len(prefix) < _LEN.size:
        prefix += _read_exact(stream, _LEN.size - len(prefix))
    (length,) = _LEN.unpack(prefix)
    if length > MAX_HEADER_BYTES:
        raise WireError(f"header of {length} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(_read_exact(stream, length))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise WireError("header is not valid JSON") from err
    if type(header) is not dict:
        raise WireError("header is not a JSON object")
    _plain(header, "header")
    arrays = {}
    specs = _array_specs(header, min(budget, MAX_FRAME_BYTES))
    for name, dtype, shape, nbytes in specs:
        raw = _read_exact(stream, nbytes)
        arrays[name] = _np().frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return header, arrays
