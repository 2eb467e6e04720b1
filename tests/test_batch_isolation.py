"""Runtime 1's batcher: a text whose forward pass fails fails alone, its batch neighbours still get answers.

Requests are validated before they are batched, so no text reaches the real model and makes it raise; the
forward function here is therefore a stand-in that raises for one marked item (the real DynamicBatcher runs it)."""

import asyncio

import pytest
from hfserve.engine.batcher import DynamicBatcher


def test_a_failing_text_fails_alone_in_a_shared_batch():
    passes: list[list[str]] = []

    def forward(items: list[str]) -> list[str]:
        passes.append(list(items))
        if "bad" in items:
            raise ValueError("this text breaks the model")
        return [item.upper() for item in items]

    async def scenario():
        batcher = DynamicBatcher(forward, "isolation", max_batch_size=8, max_batch_delay_ms=100)
        try:
            return await asyncio.gather(batcher.submit(["a", "b"]), batcher.submit(["bad"]), batcher.submit(["c"]),
                                        return_exceptions=True)
        finally:
            batcher.close()

    first, bad, last = asyncio.run(scenario())
    assert sorted(passes[0]) == ["a", "b", "bad", "c"], "the three requests did not share a batch"
    assert first == ["A", "B"] and last == ["C"]
    assert isinstance(bad, ValueError) and "breaks the model" in str(bad)
    assert sorted(map(tuple, passes[1:])) == [("a",), ("b",), ("bad",), ("c",)]


def test_a_failing_batch_of_one_reports_its_error():
    def forward(items):
        raise RuntimeError("boom")

    async def scenario():
        batcher = DynamicBatcher(forward, "isolation-one", max_batch_size=4)
        try:
            return await batcher.submit(["x"])
        finally:
            batcher.close()

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(scenario())
