"""Every encoder task on a real Triton (Python backend, CPU) with tiny checkpoints: outputs equal the in-process
engine's, requests batched together are split and trimmed back correctly, a bad request fails alone."""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hfserve.engine.encoder import EncoderEngine
from hfserve.transformer.triton_client import TritonClient, TritonRequestError
from hfserve.triton.local_server import find_triton
from hfserve.triton.repository import build_repository
from hfserve.triton.supervisor import TritonProcess, group_pids, shm_segments

from devkit.processes import free_port, http_status
from devkit.triton_stats import triton_batch_stats

from .conftest import stats_after

KINDS = ("text_embedding", "sequence_classification", "token_classification", "fill_mask")


@pytest.fixture(scope="module")
def triton(tiny_models, tmp_path_factory):
    """One tritonserver serving the four tiny encoder models (model name = kind)."""
    repository = tmp_path_factory.mktemp("tiny-repository")
    models = {kind: tiny_models(kind) for kind in KINDS}
    for kind, model_dir in models.items():
        build_repository(model_dir, repository, kind, device="cpu", max_batch_size=8, preferred_batch_sizes=[8],
                         max_queue_delay_us=100000)
    install = find_triton()
    http, grpc, metrics = free_port(), free_port(), free_port()
    shm_prefix, token = TritonProcess.new_identity()
    command = [str(install.binary), f"--model-repository={repository}", f"--backend-directory={install.backend_dir}",
               "--disable-auto-complete-config", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               "--metrics-address=127.0.0.1", f"--http-port={http}", f"--grpc-port={grpc}",
               f"--metrics-port={metrics}", "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
               f"--backend-config=python,shm-region-prefix-name={shm_prefix}", "--exit-timeout-secs=30"]
    process = TritonProcess(command, install.env, f"http://127.0.0.1:{http}", "text_embedding", shm_prefix, token, 30)
    process.start()
    try:
        deadline = time.monotonic() + 120
        while not all(http_status(f"http://127.0.0.1:{http}/v2/models/{k}/ready") == 200 for k in KINDS):
            assert process.poll() is None, "tritonserver exited during start-up"
            assert time.monotonic() < deadline, "tiny models not ready after 120 s"
            time.sleep(0.2)
        yield {"grpc": f"127.0.0.1:{grpc}", "http": f"http://127.0.0.1:{http}", "models": models,
               "process": process}
    finally:
        process.stop()  # SIGKILL of the whole group, then removal of its shared memory (the launcher's fallback)
        assert not group_pids(process.pid) and not shm_segments(shm_prefix)


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
