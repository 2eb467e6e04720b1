"""Every encoder task on a real Triton (Python backend, CPU) with tiny checkpoints: outputs equal the in-process
engine's, requests batched together are split and trimmed back correctly, a bad request fails alone."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hfserve.engine.encoder import EncoderEngine
from hfserve.transformer.triton_client import TritonClient, TritonRequestError

from devkit.triton_stats import triton_batch_stats

from .conftest import stats_after

pytestmark = pytest.mark.timeout(900)  # the first test may start the shared tritonserver: minutes on 2 loaded cores
KINDS = ("text_embedding", "sequence_classification", "token_classification", "fill_mask")


@pytest.fixture(scope="module")
def triton(tiny_triton):
    """The session's tritonserver for the tiny encoder checkpoints (tests/servers.py: TinyTriton), model name =
    kind; the reference tests use it too (each through a transformer). It stops after its last user, by group,
    and leaves no process or shared memory behind (TinyTriton.stop asserts it)."""
    return {"grpc": tiny_triton.grpc, "http": tiny_triton.http, "models": tiny_triton.models,
            "process": tiny_triton.process}


def rows(rng, vocab, lengths):
    """A [len(lengths), max] batch padded like the transformer pads one request."""
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(5, vocab, n)
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


async def infer_all(target, model, requests):
    client = TritonClient(target, model)
    await client.start()
    assert client.ready, client.reason
    try:
        return await asyncio.gather(*(client.infer(r) for r in requests), return_exceptions=True)
    finally:
        await client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_match_the_in_process_engine(triton, kind):
    engine = EncoderEngine.load(triton["models"][kind], dtype="float32", device="cpu")
    rng = np.random.default_rng(7)
    vocab = engine.model.config.vocab_size
    # Requests of different lengths and sizes, sent together so Triton's dynamic batcher merges them.
    requests = [rows(rng, vocab, lengths) for lengths in ([3], [9, 4], [1], [12, 12, 2], [6], [2, 7])]
    before = triton_batch_stats(triton["http"], kind)
    results = asyncio.run(infer_all(triton["grpc"], kind, requests))
    delta = stats_after(triton["http"], kind, before, len(requests))
    for request, result in zip(requests, results):
        assert not isinstance(result, BaseException), result
        expected = engine.forward(request)
        assert set(result) == set(expected)
        for name in expected:
            assert result[name].shape == expected[name].shape
            np.testing.assert_allclose(result[name], expected[name], atol=1e-4, rtol=0)
    assert delta.success_count == len(requests)
    assert delta.execution_count < len(requests), f"nothing was batched: {delta}"


def test_a_bad_request_fails_alone(triton):
    rng = np.random.default_rng(1)
    good = rows(rng, 50, [5, 3])
    out_of_vocab = rows(rng, 50, [4])
    out_of_vocab["input_ids"][0, 0] = 10**9
    mismatched = dict(rows(rng, 50, [4]), attention_mask=np.ones((1, 6), dtype=np.int64))
    no_tokens = dict(rows(rng, 50, [4]), attention_mask=np.zeros((1, 4), dtype=np.int64))
    results = asyncio.run(infer_all(triton["grpc"], "sequence_classification",
                                    [good, out_of_vocab, mismatched, no_tokens, good]))
    assert results[0]["logits"].shape == (2, 2) and results[4]["logits"].shape == (2, 2)
    for bad, message in zip(results[1:4], ("outside [0,", "share one shape", "at least one token")):
        assert isinstance(bad, TritonRequestError) and message in str(bad), bad


def test_large_requests_are_split_at_max_batch_size(triton):
    rng = np.random.default_rng(3)
    request = rows(rng, 50, [4] * 19)  # max_batch_size is 8 here: 3 calls, one answer
    result = asyncio.run(infer_all(triton["grpc"], "text_embedding", [request]))[0]
    engine = EncoderEngine.load(triton["models"]["text_embedding"], dtype="float32", device="cpu")
    np.testing.assert_allclose(result["embeddings"], engine.forward(request)["embeddings"], atol=1e-4, rtol=0)


def test_same_json_as_the_kserve_huggingface_runtime(triton):
    models = triton["models"]
    texts = ["Alice moved from Paris to Berlin last year.", "the movie was great", "x"]
    cases = [
        [str(models["text_embedding"]), "text_embedding", {"instances": texts}],
        [str(models["sequence_classification"]), "sequence_classification",
         {"instances": texts, "parameters": {"return_probabilities": True}}],
        [str(models["token_classification"]), "token_classification", {"instances": texts}],
        [str(models["fill_mask"]), "fill_mask",
         {"instances": ["the cat sat on the [MASK] .", "[MASK] is the capital of France"]}],
    ]
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline_parity.py")),
                             json.dumps({"predictor": triton["grpc"], "cases": cases})],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"compared": 4, "mismatches": []}
