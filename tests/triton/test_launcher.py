"""The kserve-huggingface-triton runtime end to end with all-MiniLM-L6-v2: `python -m hfserve.triton` (real
Triton on the CPU) + `python -m hfserve.transformer`, on loopback. Parity, batching and bad inputs use the session's
MiniLM stack (the chart's defaults, shared with other modules); then, on a stack of this module's own, Triton killed
and restarted, a backend stub killed, and a SIGTERM drain, in file order."""

import asyncio
import glob
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from hfserve.transformer.triton_client import TritonClient
from hfserve.triton.supervisor import group_pids

from devkit.processes import http_status
from devkit.triton_stats import triton_batch_stats
from tests.servers import served

from .conftest import stats_after, stub_pids, wait_until

pytestmark = pytest.mark.timeout(900)  # the module fixture starts Triton + transformer: minutes on 2 loaded cores
MODEL = "minilm"
TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "Serving models on Triton with batching"]
MEASURED: dict = {}
DRAIN_DELAY_S = 3.0


def service_time(url: str) -> float:
    """Median time of a small successful request right now: timing bounds scale with it, so they hold the product's
    'at once' claims on an idle machine (about 1 s) without failing on a loaded 2-core one."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        assert predict(url, TEXTS[:1], timeout=60).status_code == 200
        times.append(time.monotonic() - started)
    return sorted(times)[2]


@pytest.fixture(scope="module")
def stack(minilm_triton):
    """The session's MiniLM stack: for tests that leave it as they found it."""
    MEASURED["shared_triton_launch_to_ready_s"] = round(minilm_triton.triton.ready_after_s, 2)
    return minilm_triton.triton, minilm_triton.transformer


@pytest.fixture(scope="module")
def own_stack(launch_triton, start_transformer, minilm_dir, tmp_path_factory):
    """A stack of this module's own, for the tests that kill, restart or stop it."""
    export = tmp_path_factory.mktemp("exported-tokenizer")
    triton = launch_triton(minilm_dir, MODEL, "--tokenizer_export_dir", str(export), "--exit_timeout_s", "20",
                           "--drain_delay_s", str(DRAIN_DELAY_S))
    transformer = start_transformer(export, MODEL, triton.grpc_target)
    assert wait_until(lambda: http_status(f"{transformer.url}/v2/health/ready") == 200, 10) is not None
    MEASURED["triton_launch_to_ready_s"] = round(triton.ready_after_s, 2)
    yield triton, transformer
    print("\nMEASURED", json.dumps(MEASURED))


reference = served("minilm", MODEL)  # runtime 1, shared with the other modules serving MiniLM


def shm_of(launcher_pid: int) -> list[str]:
    return glob.glob(f"/dev/shm/hfserve_triton_{launcher_pid}_*")


def predict(url, instances, timeout=30.0):
    return httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": instances}, timeout=timeout)


def grpc_tool(*args) -> dict:
    """tritonclient.grpc in its own process (see grpc_tool.py)."""
    result = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "grpc_tool.py"), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def grpc_embeddings(target):
    """V2 gRPC inference on the serving container (kserve's GRPCInferenceService)."""
    answer = grpc_tool("infer", target, MODEL, json.dumps(TEXTS))
    assert answer["ok"], answer
    return np.array(next(iter(answer["outputs"].values())))


def test_same_answers_as_the_kserve_huggingface_runtime(stack, reference):
    _, transformer = stack
    got, want = predict(transformer.url, TEXTS), predict(reference.url, TEXTS)
    assert got.status_code == want.status_code == 200
    np.testing.assert_allclose(np.array(got.json()["predictions"]), np.array(want.json()["predictions"]), atol=1e-4)

    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]}
    got = httpx.post(f"{transformer.url}/v2/models/{MODEL}/infer", json=body, timeout=30).json()
    want = httpx.post(f"{reference.url}/v2/models/{MODEL}/infer", json=body, timeout=30).json()
    assert [o["name"] for o in got["outputs"]] == [o["name"] for o in want["outputs"]]
    for g, w in zip(got["outputs"], want["outputs"]):
        assert g["shape"] == w["shape"] and g["datatype"] == w["datatype"]
        np.testing.assert_allclose(np.array(g["data"]), np.array(w["data"]), atol=1e-4)

    got, want = grpc_embeddings(transformer.grpc_target), grpc_embeddings(reference.grpc_target)
    np.testing.assert_allclose(got, want, atol=1e-4)

    request = {"model": MODEL, "input": TEXTS}
    got = httpx.post(f"{transformer.url}/openai/v1/embeddings", json=request, timeout=30).json()
    want = httpx.post(f"{reference.url}/openai/v1/embeddings", json=request, timeout=30).json()
    np.testing.assert_allclose(np.array([d["embedding"] for d in got["data"]]),
                               np.array([d["embedding"] for d in want["data"]]), atol=1e-4)
    assert got["usage"] == want["usage"]


def test_concurrent_requests_are_batched(stack):
    triton, transformer = stack
    rng = np.random.default_rng(0)

    async def grpc_burst():
        client = TritonClient(triton.grpc_target, MODEL)
        await client.start()
        requests = []
        for _ in range(32):
            n = int(rng.integers(8, 40))
            requests.append({"input_ids": rng.integers(1000, 20000, (1, n)), "attention_mask": np.ones((1, n), int),
                             "token_type_ids": np.zeros((1, n), int)})
        try:
            return await asyncio.gather(*(client.infer(r) for r in requests))
        finally:
            await client.close()

    before = triton_batch_stats(triton.http_url, MODEL)
    results = asyncio.run(grpc_burst())
    delta = stats_after(triton.http_url, MODEL, before, 32)
    assert all(r["embeddings"].shape == (1, 384) for r in results)
    assert delta.success_count == 32
    MEASURED["grpc_32_concurrent_avg_batch"] = round(delta.average_batch_requests, 2)
    assert delta.average_batch_requests > 1, delta

    # The same through the transformer: 32 concurrent HTTP clients, one text each.
    before = triton_batch_stats(triton.http_url, MODEL)
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda i: predict(transformer.url, [f"sentence number {i} " * (1 + i % 7)]).status_code,
                                 range(32)))
    delta = stats_after(triton.http_url, MODEL, before, 32)
    assert statuses == [200] * 32
    MEASURED["http_32_concurrent_avg_batch"] = round(delta.average_batch_requests, 2)
    assert delta.average_batch_requests > 1, delta


@pytest.mark.parametrize("body, status", [
    ({"instances": []}, 400),
    ({"instances": "not a list"}, 400),
    ({"instances": [42]}, 400),
    ({"instances": ["x"] * 65}, 400),
    ({"nothing": 1}, 400),
])
def test_bad_inputs_are_4xx(stack, body, status):
    _, transformer = stack
    response = httpx.post(f"{transformer.url}/v1/models/{MODEL}:predict", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_malformed_json_and_long_inputs(stack):
    _, transformer = stack
    response = httpx.post(f"{transformer.url}/v1/models/{MODEL}:predict", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500 and "error" in response.json()
    long_text = "word " * 3000  # far beyond 256 tokens: truncated by the tokenizer, never sent whole to Triton
    response = predict(transformer.url, [long_text])
    assert response.status_code == 200 and len(response.json()["predictions"][0]) == 384


def test_triton_killed_fast_503_then_recovery(own_stack):
    triton, transformer = own_stack
    launcher_pid, triton_pid = triton.pid, triton.triton_pid
    stubs = set(group_pids(triton_pid))
    assert stubs - {triton_pid}, "no python-backend worker found in Triton's process group"
    bound = 1.0 + 5 * service_time(transformer.url)
    MEASURED["timing_bound_s"] = round(bound, 3)
    os.kill(triton_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    latencies, bodies = [], []
    for _ in range(5):
        started = time.monotonic()
        response = predict(transformer.url, TEXTS, timeout=10)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 503, response.text
        bodies.append(response.json()["error"])
    assert max(latencies) < bound, latencies
    assert bodies[0].startswith(f"predictor {triton.grpc_target} (triton model {MODEL}) is unavailable: ")
    openai = httpx.post(f"{transformer.url}/openai/v1/embeddings", json={"model": MODEL, "input": "x"}, timeout=10)
    assert openai.status_code == 503, openai.text
    MEASURED["503_latency_max_s"] = round(max(latencies), 3)
    answer = grpc_tool("infer", transformer.grpc_target, MODEL, json.dumps(TEXTS))
    assert not answer["ok"] and answer["seconds"] < bound, answer
    assert answer["code"] == "StatusCode.UNAVAILABLE" and "is unavailable" in answer["message"], answer
    assert grpc_tool("health", transformer.grpc_target, MODEL) == {"live": True, "ready": False,
                                                                   "model_ready": False}

    not_ready_after = wait_until(lambda: http_status(f"{transformer.url}/v2/health/ready") == 503, 5)
    assert not_ready_after is not None
    MEASURED["readiness_false_after_kill_s"] = round(time.monotonic() - killed_at, 3)
    assert http_status(f"{transformer.url}/v2/models/{MODEL}/ready") != 200
    assert http_status(f"{transformer.url}/v1/models/{MODEL}") != 200
    assert http_status(f"{transformer.url}/v2/health/live") == 200

    # The launcher sees Triton die, kills the orphaned python-backend worker(s), removes its shared memory.
    assert triton.wait_exit(30) == 128 + signal.SIGKILL, triton.log()
    assert not group_pids(triton_pid)
    assert not (stubs & stub_pids())
    assert not shm_of(launcher_pid)

    # Restart on the same ports: the transformer recovers by itself within ~1 s of Triton being ready.
    triton.server.start()
    assert wait_until(triton.triton_ready, 400, interval=0.01) is not None, triton.log()  # start-up, not a claim
    triton_ready_at = time.monotonic()
    ready = wait_until(lambda: http_status(f"{transformer.url}/v2/health/ready") == 200, 10, interval=0.02)
    assert ready is not None
    response = predict(transformer.url, TEXTS[:1], timeout=10)
    served = time.monotonic() - triton_ready_at
    MEASURED["readiness_back_after_triton_ready_s"] = round(ready, 3)
    MEASURED["first_answer_after_triton_ready_s"] = round(served, 3)
    assert response.status_code == 200, response.text
    assert ready < bound and served < bound + 0.5, (ready, served, bound)
    triton.wait_ready(10)  # refresh the tritonserver pid


def test_a_killed_backend_stub_restarts_the_container(own_stack):
    """Triton does not restart a dead Python-backend stub (its model answers "not healthy" while it still reports
    ready), so the launcher exits as a crash would, the transformer answers 503 meanwhile, and a restart serves."""
    triton, transformer = own_stack
    launcher_pid, triton_pid = triton.pid, triton.triton_pid
    stubs = set(group_pids(triton_pid)) - {triton_pid}
    assert stubs, "no python-backend worker found in Triton's process group"
    os.kill(sorted(stubs)[0], signal.SIGKILL)

    assert triton.wait_exit(60) == 1, triton.log()
    assert "a Python-backend stub of minilm died" in triton.log()
    assert not group_pids(triton_pid) and not (stubs & stub_pids()) and not shm_of(launcher_pid)
    response = predict(transformer.url, TEXTS[:1], timeout=30)
    assert response.status_code == 503 and response.json()["error"], response.text

    triton.server.start()
    assert wait_until(triton.triton_ready, 400, interval=0.05) is not None, triton.log()  # start-up, not a claim
    assert wait_until(lambda: predict(transformer.url, TEXTS[:1], timeout=30).status_code == 200, 30) is not None
    triton.wait_ready(10)  # refresh the tritonserver pid


def test_sigterm_drains_in_flight_requests(own_stack):
    """Requests Triton has accepted finish, and so do those that reach it during the drain delay (the transformer
    beside it drains through it: all 200); after the drain, requests are refused cleanly (503 with a JSON error); the
    launcher exits 0 and leaves nothing behind."""
    triton, transformer = own_stack
    launcher_pid, triton_pid = triton.pid, triton.triton_pid
    stubs = set(group_pids(triton_pid)) - {triton_pid}
    rng = np.random.default_rng(5)
    direct = [{"input_ids": rng.integers(1000, 20000, (4, 128)), "attention_mask": np.ones((4, 128), int),
               "token_type_ids": np.zeros((4, 128), int)} for _ in range(48)]
    done: list = []

    async def send_direct():
        client = TritonClient(triton.grpc_target, MODEL, timeout_s=60)
        await client.start()
        try:
            async def one(request):
                try:
                    result = await client.infer(request)
                    done.append(time.monotonic())
                    return result["embeddings"].shape
                except Exception as exc:  # noqa: BLE001 - reported below
                    return repr(exc)
            return await asyncio.gather(*(one(r) for r in direct))
        finally:
            await client.close()

    def via_transformer(i):
        response = predict(transformer.url, [f"text number {i} to embed while draining " * 4] * 4, timeout=60)
        return response.status_code, response.json()

    with ThreadPoolExecutor(10) as pool:  # one worker each: direct, 8 via the transformer, 1 during the delay
        direct_future = pool.submit(asyncio.run, send_direct())
        # SIGTERM while direct requests are observed in flight: some answered, the rest queued or running (a
        # fixed sleep let fast hardware finish them all first, and slow hardware none).
        part_way = wait_until(lambda: 0 < len(done) < len(direct), 300, interval=0.002)
        assert part_way is not None, f"never observed part-way: {len(done)} of {len(direct)} answered"
        transformer_futures = [pool.submit(via_transformer, i) for i in range(8)]
        time.sleep(0.1)
        signalled = time.monotonic()
        os.kill(launcher_pid, signal.SIGTERM)
        during_delay = pool.submit(via_transformer, 99)
        direct_results = direct_future.result()
        transformer_results = [f.result() for f in transformer_futures] + [during_delay.result()]
    finished_after = sum(t > signalled for t in done)
    assert finished_after > 0, "every direct request finished before the SIGTERM: nothing was drained"
    assert direct_results == [(4, 384)] * len(direct), direct_results
    assert [status for status, _ in transformer_results] == [200] * 9, [r for r in transformer_results if r[0] != 200]
    status = triton.wait_exit(40)
    MEASURED["sigterm_drain_exit_s"] = round(time.monotonic() - signalled, 2)
    MEASURED["finished_after_sigterm"] = finished_after
    assert status == 0, triton.log()
    assert not group_pids(triton_pid) and not (stubs & stub_pids()) and not shm_of(launcher_pid)
    # Afterwards: refused cleanly by the transformer, which is still alive.
    response = predict(transformer.url, TEXTS, timeout=10)
    assert response.status_code == 503 and "is unavailable" in response.json()["error"]
    assert http_status(f"{transformer.url}/v2/health/live") == 200
