"""Calls and outcomes across the process boundary (``_serialize``, ``_worker``): large
bytes leave the pickle as out-of-band buffers and arrive intact."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from inorder import OrderedPipeline

from . import workloads

pytestmark = pytest.mark.anyio


def _blob(i: int, size: int = 200_000) -> bytes:
    return bytes([i % 256]) * size


async def test_large_bytes_arguments_arrive_intact_in_every_call_shape(
    anyio_backend: Any,
) -> None:
    # Large enough on average that the codec sends them out of band after the first batch.
    async with OrderedPipeline(workers=2) as pipe:
        for i in range(12):
            await pipe.put(workloads.describe_buffer, _blob(i))  # one argument
            await pipe.put(workloads.describe_buffer, _blob(i), i)  # several
            await pipe.put(workloads.describe_buffer, _blob(i), tag=i)  # keywords
            await pipe.put(workloads.describe_buffer, bytearray(_blob(i)), i)  # writable
        pipe.close()
        results = [r async for r in pipe]
        codec = pipe._codec
    expected = []
    for i in range(12):
        expected += [("bytes", 200_000, i, 0), ("bytes", 200_000, i, i)]
        expected += [("bytes", 200_000, i, i), ("bytearray", 200_000, i, i)]
    assert results == expected
    assert codec is not None
    assert codec._large_arguments


async def test_map_sends_large_bytes_arguments_out_of_band(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        blobs = (_blob(i) for i in range(40))
        results = [r async for r in pipe.map(workloads.describe_buffer, blobs)]
        codec = pipe._codec
    assert results == [("bytes", 200_000, i, 0) for i in range(40)]
    assert codec is not None
    assert codec._large_arguments


def test_out_of_band_arguments_leave_the_pickle_and_writable_buffers_stay() -> None:
    from inorder._serialize import _dump_payloads
    from inorder._worker import ARGS, ONE

    big, small = _blob(1), _blob(2, 100)
    blob, flagged, buffers = _dump_payloads("f", ONE, [big, small, big], raw_bytes=True)
    assert not flagged
    assert [bytes(b.raw()) for b in buffers] == [big, big]
    assert len(blob) < 1000  # only the small one is in the pickle
    blob, _, buffers = _dump_payloads("f", ARGS, [(bytearray(big), big)], raw_bytes=True)
    assert [bytes(b.raw()) for b in buffers] == [big]  # the bytearray is pickled in band
    assert len(blob) > len(big)
    blob, _, buffers = _dump_payloads("f", ONE, [big], raw_bytes=False)
    assert buffers == []
    assert len(blob) > len(big)


async def test_large_bytes_results_arrive_intact(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        kinds = ["bytes"] * 30 + ["bytearray"] * 5 + ["bytes"] * 5
        results = [
            r async for r in pipe.map(workloads.make_blob, range(40), [200_000] * 40, kinds)
        ]
    assert [type(r).__name__ for r in results] == kinds
    assert [bytes(r) for r in results] == [_blob(i) for i in range(40)]


def test_large_bytes_results_leave_the_pickle_and_writable_ones_stay() -> None:
    from inorder._worker import dump_outcomes

    big, small = _blob(1), _blob(2, 100)
    blob, replaced, buffers = dump_outcomes([big, small, bytearray(big)], raw_bytes=True)
    assert replaced == 0
    assert [bytes(b.raw()) for b in buffers] == [big]  # the bytearray is pickled in band
    assert len(big) < len(blob) < 2 * len(big)
    blob, _, buffers = dump_outcomes([big], raw_bytes=False)
    assert buffers == []
    assert len(blob) > len(big)


async def test_outcomes_of_a_large_batch_of_several_segments_arrive_in_place(
    anyio_backend: Any, tmp_path: Path
) -> None:
    # A borrowed process pool runs the batch with no state of inorder's own; the parent
    # files its outcomes around a marker among the items.
    gate = tmp_path / "open"
    count = 4196
    kinds = ["ok"] * count
    for x in (3, 2053):
        kinds[x] = "raise"
    kinds[4146] = "unpicklable"  # a segment of its own, late in the batch
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        options: dict[str, Any] = {"batch": count, "window": count + 10}
        async with OrderedPipeline(executor=pool, on_error="return", **options) as pipe:
            await pipe.put(workloads.wait_for_file, -1, str(gate))
            for x, kind in enumerate(kinds):
                if x == 2047:
                    await pipe.put("a marker")
                if 2248 <= x < 2448:
                    await pipe.put(workloads.identity, x)  # a second segment
                elif kind == "unpicklable":
                    await pipe.put(workloads.returns_unpicklable, x)
                else:
                    await pipe.put(workloads.fault, x, kind)
            pipe.close()
            gate.touch()
            chunks = [chunk async for chunk in pipe.chunks()]
            stats = pipe.statistics()
    outcomes = [outcome for chunk in chunks for outcome in chunk]
    assert outcomes[:2] == [-1, 0]
    assert outcomes.pop(1 + 2047) == "a marker"  # after the gate and 2047 items
    results = outcomes[1:]
    assert len(results) == count
    for x, (kind, outcome) in enumerate(zip(kinds, results, strict=True)):
        if kind == "raise":
            assert isinstance(outcome, ValueError)
            assert f"item {x} raised" in str(outcome)
        elif kind == "unpicklable":
            assert isinstance(outcome, TypeError)
            assert "could not be pickled" in str(outcome)
            assert "tests.workloads.returns_unpicklable" in outcome.__notes__[-1]
        else:
            assert outcome == x
    assert stats.failed == 3
    assert stats.batches <= 3  # the gate, maybe one item, and the rest in one
