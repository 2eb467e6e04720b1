"""Length-aware batching: the pass planner's grouping and bounds, and the batcher's oldest-first guarantee.

The batcher tests run the packaged MiniLM through the real EncoderEngine. They are deterministic without timing:
the first forward pass is held on an Event until every text of the scenario is queued, and texts that "arrive
during a pass" are queued from inside the pass, before it returns.
"""

import asyncio
import random
import threading

import numpy as np
import pytest
from hfserve.engine.batcher import DynamicBatcher
from hfserve.engine.encoder import EncoderEngine
from hfserve.engine.passes import PassLimits, limits_for_device, padded_tokens, plan_passes
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer


def _check_plan(lengths, limits, groups, rows=None):
    rows = rows or [1] * len(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))  # each input exactly once
    for group in groups:
        assert [lengths[i] for i in group] == sorted(lengths[i] for i in group)
        if len(group) > 1:
            assert sum(rows[i] for i in group) <= limits.max_rows
            assert padded_tokens(lengths, group, rows) <= limits.max_tokens
    longest = [max(lengths[i] for i in g) for g in groups]
    assert longest == sorted(longest)  # shortest group first; groups are contiguous runs of the sorted order
    for a, b in zip(groups, groups[1:]):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


def test_short_texts_do_not_pad_to_a_long_one():
    lengths = [8, 256, 9, 11, 7, 240, 12, 10, 25, 24]
    limits = PassLimits(max_rows=32, max_tokens=2048, overhead_tokens=32)
    groups = plan_passes(lengths, limits)
    _check_plan(lengths, limits, groups)
    by_index = {i: g for g in groups for i in g}
    assert by_index[1] == by_index[5] == [5, 1]  # the two documents share a pass
    assert all(lengths[i] <= 25 for i in by_index[0])  # the queries pad to at most a sentence
    waste = sum(padded_tokens(lengths, g) for g in groups) - sum(lengths)
    assert waste < 0.1 * sum(lengths)


def test_merges_when_padding_is_cheaper_than_another_pass():
    limits = PassLimits(max_rows=32, max_tokens=4096, overhead_tokens=32)
    assert plan_passes([10, 12, 11], limits) == [[0, 2, 1]]
    assert len(plan_passes([10, 200], limits)) == 2
    # No fixed cost (an idealised engine): every distinct length gets its own pass.
    assert len(plan_passes([10, 12, 11], PassLimits(32, 4096, 0))) == 3
    # A large fixed cost (a GPU): everything within the bounds shares one pass.
    assert len(plan_passes([10, 200, 30], limits_for_device("cuda", 32))) == 1


@pytest.mark.parametrize("seed", range(5))
def test_row_and_token_bounds_hold(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(4, 16), rng.randint(17, 40), rng.randint(41, 160), 256]) for _ in range(90)]
    rows = [rng.choice([1, 1, 1, 2, 4, 8]) for _ in lengths]
    limits = PassLimits(max_rows=16, max_tokens=1024, overhead_tokens=32)
    _check_plan(lengths, limits, plan_passes(lengths, limits, rows), rows)


def test_an_input_over_the_token_bound_still_gets_a_pass():
    limits = PassLimits(max_rows=8, max_tokens=100, overhead_tokens=32)
    assert plan_passes([300, 5, 300], limits) == [[1], [0], [2]]
    assert plan_passes([], limits) == []


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    engine = EncoderEngine.load(minilm_dir)
    options = TokenizerOptions()
    encoder = TextEncoder(load_tokenizer(minilm_dir, options), 256, options, engine.input_names)
    return engine, encoder


def _texts(rng: random.Random, count: int) -> list[str]:
    words = "alpha beta gamma delta river mountain quiet engine yellow market".split()
    kinds = [lambda: rng.randint(1, 4), lambda: rng.randint(10, 20), lambda: rng.randint(200, 300)]
    return [" ".join(rng.choice(words) for _ in range(rng.choices(kinds, [10, 10, 3])[0]())) for _ in range(count)]


class Recorder:
    """Runs the real engine; holds the first pass until released, queues `arrivals` from inside later passes."""

    def __init__(self, engine, encoder, loop, arrivals=()):
        self.engine, self.encoder, self.loop = engine, encoder, loop
        self.passes: list[list] = []
        self.waiting_at_pass: list[list] = []  # the texts queued when each pass began (submission order)
        self.submitted: list = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.arrivals = list(arrivals)
        self.tasks: list[asyncio.Task] = []
        self.batcher = None

    async def submit(self, encoded):
        self.submitted.append(encoded)
        return (await self.batcher.submit([encoded]))[0]

    async def _arrive(self, items):
        self.tasks += [asyncio.ensure_future(self.submit(e)) for e in items]
        await asyncio.sleep(0)  # let each submit() reach the queue

    def run_batch(self, items):
        if not self.passes:
            self.started.set()
            self.release.wait(60)
        served = {id(e) for p in self.passes for e in p}
        self.waiting_at_pass.append([e for e in self.submitted if id(e) not in served])
        self.passes.append(items)
        result = list(self.engine.forward(self.encoder.pad(items))["embeddings"])
        if self.arrivals:
            asyncio.run_coroutine_threadsafe(self._arrive(self.arrivals.pop(0)), self.loop).result(60)
        return result


def _run_scenario(minilm, first, queued, arrivals=(), **batcher_args):
    engine, encoder = minilm

    async def scenario():
        recorder = Recorder(engine, encoder, asyncio.get_running_loop(), arrivals)
        recorder.batcher = DynamicBatcher(recorder.run_batch, "unit", **batcher_args)
        await recorder._arrive([first])
        while not recorder.started.is_set():  # the first pass holds `first` alone
            await asyncio.sleep(0.001)
        await recorder._arrive(queued)
        recorder.release.set()
        while recorder.tasks and not all(t.done() for t in recorder.tasks):
            await asyncio.gather(*recorder.tasks)
        recorder.batcher.close()
        return recorder, [t.result() for t in recorder.tasks]

    return asyncio.run(scenario())


def test_batcher_groups_queued_texts_by_length(minilm):
    engine, encoder = minilm
    encoded = encoder.encode(_texts(random.Random(1), 30))
    recorder, results = _run_scenario(minilm, encoded[0], encoded[1:], max_batch_size=32, max_batch_tokens=2048)
    lengths = sorted(len(e) for e in encoded[1:])
    assert lengths[0] < 10 and lengths[-1] > 150  # the corpus is really mixed
    planned = recorder.passes[1:]  # the first pass held only the first text
    assert sum(len(p) for p in planned) == 29
    for items in planned:
        assert len(items) * max(len(e) for e in items) <= 2048
    short_passes = [p for p in planned if min(len(e) for e in p) < 10]
    assert all(max(len(e) for e in p) < 40 for p in short_passes)  # no query padded to a document
    assert max(len(p) for p in planned) > 4  # and they did share passes
    for item, vector in list(zip(encoded, results))[:8]:  # a text's result does not depend on its pass-mates
        np.testing.assert_allclose(vector, engine.forward(encoder.pad([item]))["embeddings"][0], atol=1e-5)


def test_every_pass_serves_the_oldest_waiting_text(minilm):
    """No starvation, bounded wait: a text with k texts queued ahead of it runs within k passes, even while short
    texts keep arriving. Here a long document waits behind shorts and a stream of new shorts arrives every pass."""
    _, encoder = minilm
    rng = random.Random(2)
    shorts = [encoder.encode([" ".join(["river"] * rng.randint(1, 5))])[0] for _ in range(61)]
    document = encoder.encode(["mountain " * 300])[0]
    queued = shorts[:12] + [document] + shorts[12:20]
    arrivals = [shorts[20 + 8 * i: 28 + 8 * i] for i in range(5)]
    recorder, _ = _run_scenario(minilm, shorts[20 + 40], queued, arrivals, max_batch_size=4, max_batch_tokens=2048)
    for waiting, items in zip(recorder.waiting_at_pass, recorder.passes):
        assert any(e is waiting[0] for e in items), "a pass skipped the oldest waiting text"
    document_pass = next(n for n, p in enumerate(recorder.passes) if any(e is document for e in p))
    assert document_pass <= 1 + 12  # 12 texts were ahead of it, after the first pass
    assert all(len(p) == 1 for p in recorder.passes if any(e is document for e in p))


class EngineBackedTritonBackend:
    """The transformer's TritonBackend with its gRPC hop replaced by the same EncoderEngine Triton's model.py
    runs (no Triton process here: this checks how the transformer splits and reassembles a request)."""

    @staticmethod
    def make(engine, pad_id: int):
        from hfserve.transformer.triton_backend import TritonBackend

        class Backend(TritonBackend):
            sent: list = []

            async def infer(self, inputs):
                self.sent.append(inputs["input_ids"].shape)
                return engine.forward({name: inputs[name] for name in engine.input_names})

        backend = Backend("127.0.0.1:9", "minilm")
        backend.load(pad_id)
        return backend


def test_transformer_sends_a_mixed_request_as_length_groups(minilm):
    engine, encoder = minilm
    backend = EngineBackedTritonBackend.make(engine, encoder.pad_id)
    texts = ["short", "mountain " * 300, "a query", "a somewhat longer sentence about rivers and markets"]
    encoded = encoder.encode(texts)
    forward = asyncio.run(backend.forward(encoded))
    assert len(backend.sent) == 2 and sorted(shape[1] for shape in backend.sent)[-1] == 256
    assert sum(shape[0] for shape in backend.sent) == 4 and min(shape[1] for shape in backend.sent) < 20
    assert forward.forward_seconds is None  # Triton's passes are not timed here: the whole wait is inference
    for item, result in zip(encoded, forward.rows):  # back in request order, as if sent one by one
        np.testing.assert_allclose(result["embeddings"], engine.forward(encoder.pad([item]))["embeddings"][0],
                                   atol=1e-5)
