"""Run the same requests through the kserve-huggingface model (in-process engine) and the transformer's model
(Triton over gRPC), and report differences. Run as a subprocess by test_triton_tasks.py: it imports kserve, which
must not share a process with tests that import tritonclient.grpc.

    python tests/triton/pipeline_parity.py '{"predictor": "127.0.0.1:8001", "cases": [[model_dir, triton_name, payload], ...]}'
Prints one JSON line: {"compared": N, "mismatches": [...]}.
"""

import asyncio
import json
import sys
import time
from pathlib import Path


def diff(a, b, path="", tol=1e-4):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in diff(a[k], b[k], f"{path}.{k}", tol)]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]", tol)]
    if isinstance(a, float) or isinstance(b, float):
        return [] if abs(float(a) - float(b)) <= tol else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


async def wait_ready(service, name: str, timeout_s: float = 120.0) -> None:
    """Until the client has connected and Triton reports the model ready (on loaded cores the first gRPC
    handshake alone has taken longer than the client's connect timeout)."""
    deadline = time.monotonic() + timeout_s
    while not await service.ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"triton model {name} not ready after {timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def run_case(model, payload):
    job = await model.preprocess(payload)
    job = await model.predict(job)
    return await model.postprocess(job)


async def main(spec):
    from hfserve.config import ModelSettings
    from hfserve.core.encoder_service import EncoderService
    from hfserve.huggingface.in_process_backend import InProcessBackend
    from hfserve.serving.kserve_adapter import KServeEncoderModel
    from hfserve.tasks.detect import infer_task
    from hfserve.transformer.triton_backend import TritonBackend

    compared, mismatches = 0, []
    for model_dir, triton_name, payload in spec["cases"]:
        settings = ModelSettings(model_name=triton_name, model_dir=Path(model_dir), task=infer_task(Path(model_dir)))
        local = KServeEncoderModel(EncoderService(settings, InProcessBackend(settings, dtype="float32", device="cpu")))
        local.load()
        triton = TritonBackend(spec["predictor"], triton_name)
        remote = KServeEncoderModel(EncoderService(settings, triton))
        remote.load()
        await wait_ready(remote.service, triton_name)  # as the transformer's readiness gates its traffic
        expected = await run_case(local, payload)
        got = await run_case(remote, payload)
        local.stop()
        await triton.client.close()
        compared += 1
        mismatches += [f"{triton_name}: {d}" for d in diff(expected, got)][:5]
    print(json.dumps({"compared": compared, "mismatches": mismatches}))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
