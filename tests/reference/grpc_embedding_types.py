"""A V2 gRPC infer with parameters, through tritonclient.grpc (the standard V2 gRPC client) in a process of its own:
its protobuf modules and kserve's declare the same messages, so a pytest session imports only one of them (see
tests/grpc_tool.py).

    python grpc_embedding_types.py TARGET MODEL TEXTS_JSON PARAMETERS_JSON
prints {"outputs": {name: [datatype, numpy dtype, nested values]}} in the response's order.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def call(target: str, model: str, texts: list[str], parameters: dict) -> dict:
    result = subprocess.run([sys.executable, str(Path(__file__)), target, model, json.dumps(texts),
                             json.dumps(parameters)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def infer(target: str, model: str, texts: list[str], parameters: dict) -> dict:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(target)
    text = grpcclient.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    result = client.infer(model, [text], parameters=parameters, client_timeout=60)
    outputs = {}
    for output in result.get_response().outputs:
        array = result.as_numpy(output.name)
        outputs[output.name] = [output.datatype, str(array.dtype), array.tolist()]
    return {"outputs": outputs}


if __name__ == "__main__":
    print(json.dumps(infer(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]))))
