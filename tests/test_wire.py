"""The channel carries plain data only and refuses anything else."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest

from grader import wire


def _stream(*frames: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(frames))


def test_round_trip_keeps_values_dtypes_and_shapes():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False]), "c": np.zeros((0, 4))}
    header, got = wire.read(_stream(wire.encode({"kind": "x", "meta": {"k": [1, 2.5, None]}}, arrays)))
    assert header["kind"] == "x" and header["meta"] == {"k": [1, 2.5, None]}
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)


def test_clean_end_of_stream_is_none():
    assert wire.read(io.BytesIO(b"")) is None


def _raw(header: dict, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack(">I", len(text)) + text + body


@pytest.mark.parametrize("header", [
    {"arrays": [{"name": "a", "dtype": "object", "shape": [1]}]},
    {"arrays": [{"name": "a", "dtype": "float32", "shape": [-1]}]},
    {"arrays": [{"name": "a", "dtype": "float32", "shape": [1.5]}]},
    {"arrays": [{"name": "a", "dtype": "float32", "shape": [10**6, 10**6]}]},
    {"arrays": [{"name": "a", "dtype": "float32", "shape": [1], "extra": 1}]},
    {"arrays": "nope"},
])
def test_malformed_array_specs_are_refused(header):
    with pytest.raises(wire.WireError):
        wire.read(_stream(_raw(header, b"\0" * 8)))


def test_non_finite_numbers_and_huge_headers_are_refused():
    text = b'{"arrays": [], "x": NaN}'
    with pytest.raises(wire.WireError):
        wire.read(_stream(struct.pack(">I", len(text)) + text))
    with pytest.raises(wire.WireError):
        wire.read(_stream(struct.pack(">I", wire.MAX_HEADER_BYTES + 1)))


def test_pickle_bytes_are_not_json():
    import pickle

    blob = pickle.dumps({"arrays": []})
    with pytest.raises(wire.WireError):
        wire.read(_stream(struct.pack(">I", len(blob)) + blob))


def test_truncated_frame_is_an_error_not_a_hang():
    frame = wire.encode({"kind": "x"}, {"a": np.ones(100)})
    with pytest.raises(EOFError):
        wire.read(_stream(frame[:-10]))


def test_encoder_refuses_object_arrays():
    with pytest.raises(wire.WireError):
        wire.encode({}, {"a": np.array([object()])})
