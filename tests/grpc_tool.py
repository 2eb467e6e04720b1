"""tritonclient.grpc (the standard V2 gRPC client) in a process of its own, for the tests.

tritonclient's generated protobuf modules and kserve's declare the same `inference.*` messages; whichever a
pytest session imports first makes importing the other fail. So the tests never import tritonclient.grpc
themselves: they run this script and read one JSON line.

    python grpc_tool.py infer TARGET MODEL TEXTS_JSON     V2 gRPC infer of a BYTES "text" tensor
    python grpc_tool.py infer_fp32 TARGET MODEL           a deliberately wrong FP32 "text" tensor
    python grpc_tool.py metadata TARGET MODEL             model metadata as JSON
    python grpc_tool.py health TARGET MODEL               live / ready / model ready
    python grpc_tool.py unload TARGET MODEL               the repository API's unload RPC: status code or ok
    python grpc_tool.py reference REQUEST_HEX             tritonclient's reading of our encoded request, and
                                                          reference responses serialized by tritonclient
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def call(*args: str) -> dict:
    """Runs this tool in a fresh interpreter and returns its JSON answer."""
    result = subprocess.run([sys.executable, str(Path(__file__)), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def infer(target, model, texts, fp32=False):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(target)
    if fp32:
        text = grpcclient.InferInput("text", [len(texts)], "FP32")
        text.set_data_from_numpy(np.zeros(len(texts), dtype=np.float32))
    else:
        text = grpcclient.InferInput("text", [len(texts)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    started = time.monotonic()
    try:
        result = client.infer(model, [text], client_timeout=10)
    except InferenceServerException as exc:
        return {"ok": False, "code": exc.status(), "message": exc.message(), "seconds": time.monotonic() - started}
    outputs = {o.name: _plain(result.as_numpy(o.name)) for o in result.get_response().outputs}
    dtypes = {o.name: str(result.as_numpy(o.name).dtype) for o in result.get_response().outputs}
    return {"ok": True, "outputs": outputs, "dtypes": dtypes, "seconds": time.monotonic() - started}


def _plain(array):
    if array.dtype == np.object_:
        return [x.decode() if isinstance(x, bytes) else x for x in array.reshape(-1).tolist()]
    return array.tolist()


def metadata(target, model):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(target).get_model_metadata(model, as_json=True)


def health(target, model):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target)
    return {"live": client.is_server_live(), "ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(model)}


def unload(target, model):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    try:
        grpcclient.InferenceServerClient(target).unload_model(model)
    except InferenceServerException as exc:
        return {"ok": False, "code": exc.status(), "message": exc.message()}
    return {"ok": True}


def reference(request_hex):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest.FromString(bytes.fromhex(request_hex))
    parsed = {"model_name": request.model_name,
              "inputs": [{"name": i.name, "datatype": i.datatype, "shape": list(i.shape)} for i in request.inputs],
              "outputs": [o.name for o in request.outputs],
              "raw": [np.frombuffer(r, "<i8").tolist() for r in request.raw_input_contents]}
    values = np.arange(30, dtype=np.float32).reshape(2, 3, 5) / 7
    response = service_pb2.ModelInferResponse(model_name="m")
    response.outputs.add(name="logits", datatype="FP32", shape=[2, 3, 5])
    response.raw_output_contents.append(values.tobytes())
    config = service_pb2.ModelConfigResponse()
    config.config.name, config.config.max_batch_size = "m", 32
    config.config.input.add(name="input_ids", dims=[-1])
    config.config.input.add(name="attention_mask", dims=[-1])
    config.config.output.add(name="logits", dims=[-1, 5])
    return {"request": parsed,
            "infer_response": response.SerializeToString().hex(), "values": values.tolist(),
            "config_response": config.SerializeToString().hex(),
            "ready_true": service_pb2.ModelReadyResponse(ready=True).SerializeToString().hex(),
            "ready_false": service_pb2.ModelReadyResponse(ready=False).SerializeToString().hex(),
            "name_request": service_pb2.ModelReadyRequest(name="x").SerializeToString().hex()}


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "infer":
        print(json.dumps(infer(args[0], args[1], json.loads(args[2]))))
    elif command == "infer_fp32":
        print(json.dumps(infer(args[0], args[1], ["x"], fp32=True)))
    elif command == "metadata":
        print(json.dumps(metadata(*args)))
    elif command == "health":
        print(json.dumps(health(*args)))
    elif command == "unload":
        print(json.dumps(unload(*args)))
    else:
        print(json.dumps(reference(args[0])))
