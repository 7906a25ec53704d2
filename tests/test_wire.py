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
    # names are quoted to people: no forged lines, escapes, bidi controls or essays
    {"arrays": [{"name": "init/params/\r\nScore: 100/100", "dtype": "float32", "shape": [1]}]},
    {"arrays": [{"name": "init/params/\x1b[2Jgamma", "dtype": "float32", "shape": [1]}]},
    {"arrays": [{"name": "init/params/\u202egamma", "dtype": "float32", "shape": [1]}]},
    {"arrays": [{"name": "init/params/" + "g" * 300, "dtype": "float32", "shape": [1]}]},
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


@pytest.mark.parametrize("header", [
    b'{"kind": "result", "seconds": ' + b"9" * 400 + b', "arrays": []}',
    b'{"kind": "result", "meta": ' + b"[" * 50_000 + b"]" * 50_000 + b', "arrays": []}',
    b'{"kind": "result", "meta": "' + b"x" * 10_000 + b'", "arrays": []}',
])
def test_headers_beyond_plain_bounds_are_refused(header: bytes):
    with pytest.raises(wire.WireError):
        wire.read(_stream(struct.pack(">I", len(header)) + header))


def test_a_frame_may_not_declare_more_than_its_budget():
    frame = wire.encode({"kind": "result"}, {"y": np.zeros((64, 64), np.float64)})
    with pytest.raises(wire.WireError, match="may send"):
        wire.read(_stream(frame), budget=1024)
    assert wire.read(_stream(frame), budget=64 * 64 * 8)[1]["y"].shape == (64, 64)


def test_jit_is_advice_because_only_the_worker_can_claim_it():
    from grader.checks import CHECKS

    jit = next(c for c in CHECKS if c.id == "jit")
    assert jit.weight == 0 and jit.advisory
    assert all("jit" not in [d.id for d in c.depends] for c in CHECKS)
