"""Documented runtime options that had no test, each checked on a real runtime-1 process (tiny checkpoints):
--trust_remote_code off by default, --workers must be 1, --device, --dtype, --request_timing_logs, the tokenizer
flags, and the batch cap and delay. (--return_probabilities as a flag: tests/reference, on both runtimes;
temperature, top_p and seed: tests/reference/test_generation.py.)"""

import concurrent.futures
import json
import re
import shutil
import threading

import httpx
import numpy as np
import pytest
import torch
from hfserve.huggingface.__main__ import build_parser as huggingface_parser
from hfserve.transformer.__main__ import build_parser as transformer_parser
from transformers import AutoModel, AutoTokenizer

from devkit.processes import ServerProcess, free_port, huggingface_command

TEXTS = ["Paris is the capital of France.", "PARIS IS THE CAPITAL OF FRANCE.", "the cat sat on the mat"]


def predict(server, instances, **parameters):
    body = {"instances": instances, **({"parameters": parameters} if parameters else {})}
    response = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def exits_with(tmp_path, model_dir, *extra, timeout=180) -> tuple[int, str]:
    """Start runtime 1 with these arguments, expecting it to refuse: (exit status, log)."""
    server = ServerProcess(huggingface_command(model_dir, "refused", free_port(), free_port(), *extra),
                           tmp_path / "refused.log")
    with server:
        code = server.process.wait(timeout)
    return code, server.log_tail(80)


def mean_pooled(model_dir, texts, lower_case=True, special_tokens=True, dtype=torch.float32) -> np.ndarray:
    """The tiny embedding checkpoint's answer computed here with transformers alone (mean pooling, Normalize)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, do_lower_case=lower_case)
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            encoded = tokenizer(text, add_special_tokens=special_tokens, return_tensors="pt")
            hidden = model(**encoded).last_hidden_state[0].float()
            vector = hidden.mean(dim=0).numpy()
            rows.append(vector / np.linalg.norm(vector))
    return np.asarray(rows)


def test_defaults_are_the_safe_ones():
    for parser in (huggingface_parser(), transformer_parser()):
        args = parser.parse_args(["--model_name", "m"])
        assert args.trust_remote_code is False and args.request_timing_logs is False
        assert args.disable_lower_case is False and args.disable_special_tokens is False
        assert args.return_probabilities is False and args.workers == 1
    args = huggingface_parser().parse_args(["--model_name", "m"])
    assert (args.dtype, args.device) == ("auto", "auto")


def test_remote_code_is_not_run_without_trust_remote_code(tmp_path, tiny_models):
    """A checkpoint whose config points at its own Python module: refused, and the module never imported."""
    model_dir = tmp_path / "remote-code"
    shutil.copytree(tiny_models("sequence_classification"), model_dir)
    marker = tmp_path / "remote-code-ran"
    (model_dir / "custom_code.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class CustomConfig(BertConfig):\n    model_type = 'hfserve-custom'\n"
        "class CustomModel(BertForSequenceClassification):\n    config_class = CustomConfig\n")
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="hfserve-custom", architectures=["CustomModel"],
                  auto_map={"AutoConfig": "custom_code.CustomConfig",
                            "AutoModelForSequenceClassification": "custom_code.CustomModel"})
    (model_dir / "config.json").write_text(json.dumps(config))
    code, log = exits_with(tmp_path, model_dir, "--task", "sequence_classification")
    assert code != 0, log
    assert "trust_remote_code" in log and "Traceback" not in log, log
    assert not marker.exists(), "the checkpoint's own code ran without --trust_remote_code"


def test_workers_other_than_one_are_refused(tmp_path, tiny_models):
    code, log = exits_with(tmp_path, tiny_models("text_embedding"), "--workers", "2")
    assert code != 0 and "--workers must be 1" in log, log


def test_device_cuda_without_a_gpu_is_refused(tmp_path, tiny_models):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `make conformance-gpu` checks placement there")
    code, log = exits_with(tmp_path, tiny_models("text_embedding"), "--device", "cuda")
    assert code != 0 and "no CUDA device is available" in log, log


@pytest.fixture(scope="module")
def flagged(start_huggingface_runtime, tiny_models):
    """Runtime 1 with the tokenizer flags, timing logs, and a batch cap of 2 held open 200 ms."""
    return start_huggingface_runtime(tiny_models("text_embedding"), "flagged", "--disable_lower_case",
                                     "--disable_special_tokens", "--request_timing_logs", "--device", "cpu",
                                     "--max_batch_size", "2", "--max_batch_delay_ms", "200")


@pytest.fixture(scope="module")
def bfloat16(start_huggingface_runtime, tiny_models):
    return start_huggingface_runtime(tiny_models("text_embedding"), "bf16", "--dtype", "bfloat16")


def test_tokenizer_flags_reach_the_tokenizer(flagged, tiny_models):
    model_dir = tiny_models("text_embedding")
    got = np.asarray(predict(flagged, TEXTS))
    np.testing.assert_allclose(got, mean_pooled(model_dir, TEXTS, lower_case=False, special_tokens=False),
                               atol=1e-5, rtol=0)
    default = mean_pooled(model_dir, TEXTS)
    assert np.abs(got - default).max() > 1e-3, "the flags changed nothing"
    assert np.abs(got[0] - got[1]).max() > 1e-3, "upper case was lower-cased anyway"


def test_batch_cap_and_delay(flagged):
    """Eight one-text requests released together, with a cap of 2 and a 200 ms delay: no forward pass holds more
    than 2 texts (every burst), and the delay gathers texts into 2-text passes (at least one). A burst spread out by
    a stalled machine is sent again for the second claim, rather than failing it."""
    for _ in range(3):
        barrier = threading.Barrier(8)

        def send(text):
            barrier.wait()
            return predict(flagged, [text])

        before = batch_histogram(flagged)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, [f"text number {i}" for i in range(8)]))
        assert all(len(a) == 1 for a in answers)
        after = batch_histogram(flagged)
        passes, texts = after["count"] - before["count"], after["sum"] - before["sum"]
        at_most_two = after["le_2"] - before["le_2"]
        assert texts == 8 and at_most_two == passes, f"a batch exceeded the cap: {before} -> {after}"
        if passes < texts:
            break
    assert passes < texts, f"the delay never gathered two texts: {passes} passes for 8 texts, three bursts"


def batch_histogram(server) -> dict:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    label = f'model_name="{server.model_name}"'

    def value(pattern: str) -> float:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else 0.0

    return {"count": value(rf"hfserve_batch_size_count\{{{label}\}} (\S+)"),
            "sum": value(rf"hfserve_batch_size_sum\{{{label}\}} (\S+)"),
            "le_2": value(rf'hfserve_batch_size_bucket\{{le="2.0",{label}\}} (\S+)')}


def test_request_timing_logs_only_when_asked(flagged, bfloat16):
    predict(flagged, TEXTS[:1])
    predict(bfloat16, TEXTS[:1])
    timing = re.compile(r"predict_ms|cpu time")
    assert timing.search(flagged.server.log_tail(400)), flagged.server.log_tail(40)
    assert not timing.search(bfloat16.server.log_tail(400)), bfloat16.server.log_tail(40)


def test_dtype_bfloat16_is_applied(bfloat16, tiny_models):
    model_dir = tiny_models("text_embedding")
    got = np.asarray(predict(bfloat16, TEXTS))
    float32 = mean_pooled(model_dir, TEXTS)
    np.testing.assert_allclose(got, mean_pooled(model_dir, TEXTS, dtype=torch.bfloat16), atol=2e-2, rtol=0)
    assert np.abs(got - float32).max() > 1e-5, "bfloat16 answers equal float32 ones: --dtype was not applied"


def test_bad_requests_fail_alone_beside_good_ones(flagged):
    """Bad and good requests inside one 200 ms batching window: each bad one gets its 400, every good one its answer."""
    bodies = [{"instances": ["good one"]}, {"instances": [1]}, {"instances": ["good two"]}, {"instances": []},
              {"instances": ["good three"], "parameters": {"normalize": "yes"}}, {"instances": ["good four"]}]
    url = f"{flagged.url}/v1/models/{flagged.model_name}:predict"
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: httpx.post(url, json=body, timeout=60), bodies))
    assert [a.status_code for a in answers] == [200, 400, 200, 400, 400, 200], [a.text for a in answers]
    assert all(len(a.json()["predictions"]) == 1 for a in answers if a.status_code == 200)
    assert all(a.json()["error"] for a in answers if a.status_code == 400)
