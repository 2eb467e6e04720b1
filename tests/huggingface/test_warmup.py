"""Runtime 1 warms up (one pass per length bucket the planner will use, with the configured engine) before it
reports ready, so its first request after ready costs about what a steady-state one does."""

import json
import statistics
import time
import urllib.request
from pathlib import Path

from hfserve.engine.passes import PassLimits, limits_for_device
from hfserve.engine.warmup import planned_max_length, warmup_shapes

from devkit.ports import release, reserve_ports
from devkit.processes import ServerProcess, huggingface_command

from ..servers import NO_DRAIN_DELAY

TEXT = " ".join(["KServe serves Hugging Face models from any storage, ready fast and only when it can answer."] * 6)


def test_the_warm_up_covers_every_length_bucket_up_to_the_longest_input(minilm_dir, tiny_models):
    assert planned_max_length(minilm_dir) == 256  # MiniLM's sentence-transformers max_seq_length
    assert planned_max_length(minilm_dir, requested=100) == 100
    shapes = warmup_shapes(256, limits_for_device("cpu", 32))
    assert [t for r, t in shapes if r == 1] == [8, 16, 32, 64, 128, 256]
    assert (4, 32) in shapes
    assert warmup_shapes(20, PassLimits(max_rows=1)) == [(1, 8), (1, 16), (1, 20)]  # no batched pass at 1 row
    tiny = planned_max_length(tiny_models("text_embedding"))
    assert (1, tiny) in warmup_shapes(tiny, limits_for_device("cpu", 32))


def busy_ns(pid: int) -> int:
    """CPU time all the server's threads have run (schedstat, ns): the work a request costs, which other
    processes on a shared machine stretch in wall time but do not change."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total


def predict_cost(url: str, pid: int) -> tuple[float, float]:
    """(wall seconds, server CPU seconds) of one predict request."""
    body = json.dumps({"instances": [TEXT]}).encode()
    request = urllib.request.Request(f"{url}/v1/models/minilm:predict", data=body,
                                     headers={"content-type": "application/json"})
    busy, started = busy_ns(pid), time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        response.read()
    return time.perf_counter() - started, (busy_ns(pid) - busy) / 1e9


def test_the_first_request_after_ready_costs_within_twice_the_steady_state(minilm_dir, tmp_path):
    """Measured as the server's CPU time per request (wall time reported beside it): on this machine, shared with
    other test runs, wall time swings 10x within seconds. libgomp's spin-wait is off (GOMP_SPINCOUNT=0) because
    spinning threads that wait for a core burn CPU time in proportion to the machine's load."""
    http_port, grpc_port = reserve_ports(2)
    url = f"http://127.0.0.1:{http_port}"
    server = ServerProcess(huggingface_command(minilm_dir, "minilm", http_port, grpc_port),
                           tmp_path / "runtime1.log", env={**NO_DRAIN_DELAY, "GOMP_SPINCOUNT": "0"})
    try:
        server.start()
        server.wait_http(f"{url}/v2/models/minilm/ready", timeout=300)
        first_wall, first_cpu = predict_cost(url, server.pid)
        steady = [predict_cost(url, server.pid) for _ in range(15)]
        steady_wall, steady_cpu = (statistics.median(s[i] for s in steady) for i in (0, 1))
        log = server.log_tail(400)
        assert "warmed up with 7 forward passes (1x8, 1x16, 1x32, 1x64, 1x128, 1x256, 4x32)" in log, log
        assert first_cpu <= 2 * steady_cpu, (f"first request {first_cpu * 1000:.0f} ms CPU ({first_wall * 1000:.0f} "
                                             f"ms wall), steady state {steady_cpu * 1000:.0f} ms CPU "
                                             f"({steady_wall * 1000:.0f} ms wall)")
    finally:
        server.stop()
        release(http_port, grpc_port)
