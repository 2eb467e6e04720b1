"""The kserve-huggingface runtime with --engine onnx (and --quantize int8): same JSON as the torch engine."""

import httpx
import numpy as np
import pytest
from hfserve.huggingface.__main__ import build_model, build_parser


def predict(runtime, instances, **extra):
    return httpx.post(f"{runtime.url}/v1/models/{runtime.model_name}:predict",
                      json={"instances": instances, **extra}, timeout=120)


TEXTS = ["Alice moved from Paris to Berlin last year.", "the movie was great", "x"]


# The torch servers are the other modules' (same checkpoint and arguments); the ONNX export cache is the session's.
@pytest.mark.parametrize("kind, model_name", [("text_embedding", "embed"), ("sequence_classification", "sentiment")])
def test_onnx_engine_answers_like_torch(start_huggingface_runtime, tiny_models, onnx_cache, kind, model_name):
    cache = onnx_cache
    torch_runtime = start_huggingface_runtime(tiny_models(kind), model_name)
    onnx_runtime = start_huggingface_runtime(tiny_models(kind), model_name, "--engine", "onnx",
                                             "--onnx_cache_dir", str(cache))
    expected, actual = predict(torch_runtime, TEXTS).json(), predict(onnx_runtime, TEXTS).json()
    if kind == "text_embedding":
        np.testing.assert_allclose(actual["predictions"], expected["predictions"], atol=1e-4, rtol=0)
    else:
        assert [p["label"] for p in actual["predictions"]] == [p["label"] for p in expected["predictions"]]
        np.testing.assert_allclose([p["score"] for p in actual["predictions"]],
                                   [p["score"] for p in expected["predictions"]], atol=1e-4, rtol=0)
    assert list(cache.glob("*/model.onnx"))
    bad = predict(onnx_runtime, [])  # bad input still gets a JSON 4xx from the ONNX-backed model
    assert 400 <= bad.status_code < 500 and "error" in bad.json()


def test_onnx_options_are_refused_for_generative_models(tiny_models):
    args = build_parser().parse_args(["--model_name", "g", "--model_dir", str(tiny_models("text_generation")),
                                      "--engine", "onnx"])
    with pytest.raises(ValueError, match="generative tasks run with torch"):
        build_model(args)
    with pytest.raises(SystemExit):  # argparse: not a choice
        build_parser().parse_args(["--model_name", "g", "--quantize", "int4"])
