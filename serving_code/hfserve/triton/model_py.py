"""Triton Python-backend model serving one Hugging Face encoder checkpoint with `EncoderEngine`.

The repository builder copies this file to `<repository>/<model>/1/model.py`; Triton's Python-backend stub runs it.
Parameters come from `config.pbtxt`: model_dir, task, dtype, trust_remote_code.

Triton's dynamic batcher hands `execute` a list of requests, each holding a [b_i, T_i] batch of token ids (the
transformer pads the texts of one request to a common length; `allow_ragged_batch` lets requests of different T_i
share one execute, and the batcher counts rows, never tokens). We check each request on its own (a bad request
gets its own error and cannot poison the batch), then plan forward passes over the good ones by length
(`hfserve.engine.passes`: sorted, token-bounded, merged only where padding is cheaper than another pass), pad each
pass to its own longest T, and split the outputs back per request, trimming token-level outputs to each T_i.
Passes run shortest first and each request is answered as soon as its pass is done, so a short request does not
wait for a long document that Triton put in the same batch.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class RequestError(ValueError):
    pass


SENT = object()  # a response already sent through the request's response sender


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in self.model_config.get("parameters", {}).items()}
        if params.get("hfserve_path") and Path(params["hfserve_path"], "hfserve").is_dir():
            sys.path.insert(0, params["hfserve_path"])

        import torch

        from hfserve.engine.encoder import EncoderEngine
        from hfserve.engine.passes import limits_for_device, plan_passes

        model_dir = Path(params["model_dir"])
        device = "cpu"
        if args.get("model_instance_kind") == "GPU":
            torch.cuda.set_device(int(args.get("model_instance_device_id", 0)))
            device = "cuda"
        self.engine = EncoderEngine.load(
            model_dir,
            task=params.get("task") or None,
            dtype=params.get("dtype") or "auto",
            device=device,
            trust_remote_code=params.get("trust_remote_code", "false").lower() == "true",
        )
        self.plan_passes = plan_passes
        self.early_responses = hasattr(pb_utils, "TRITONSERVER_RESPONSE_COMPLETE_FINAL")
        max_tokens = int(params.get("max_batch_tokens") or 0) or None
        self.pass_limits = limits_for_device(self.engine.device.type, max(1, self.model_config.get("max_batch_size", 1)),
                                        max_tokens)
        self.input_names = [i["name"] for i in self.model_config["input"]]
        self.output_names = [o["name"] for o in self.model_config["output"]]
        # Token-level outputs ([B, T, ...]) are trimmed back to each request's own length.
        self.token_level = {o["name"]: (list(o["dims"])[:1] == [-1]) for o in self.model_config["output"]}
        config = self.engine.model.config
        pad = getattr(config, "pad_token_id", None)
        self.pad_values = {"input_ids": int(pad) if isinstance(pad, int) and pad >= 0 else 0,
                           "attention_mask": 0, "token_type_ids": 0}
        self.limits = {"input_ids": getattr(config, "vocab_size", None),
                       "token_type_ids": getattr(config, "type_vocab_size", None),
                       "attention_mask": 2}
        self.max_positions = getattr(config, "max_position_embeddings", None)
        # Warm up (first forward passes allocate and pick kernels): Triton reports the model ready only after
        # initialize(), so the first real requests after a (re)start do not pay for it.
        for rows, tokens in ((1, 8), (4, 32)):
            ids = np.full((rows, tokens), self.pad_values["input_ids"], dtype=np.int64)
            self.engine.forward({name: (ids if name == "input_ids" else np.ones_like(ids) if name == "attention_mask"
                                        else np.zeros_like(ids)) for name in self.input_names})
        pb_utils.Logger.log_info(
            f"hfserve: loaded {model_dir} task={self.engine.task} device={self.engine.device} "
            f"inputs={self.input_names} outputs={self.output_names}"
        )

    def _read(self, request):
        arrays = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"missing input {name!r}")
            array = tensor.as_numpy()
            if array.ndim != 2:
                raise RequestError(f"input {name!r} must have shape [batch, tokens], got {list(array.shape)}")
            arrays[name] = array.astype(np.int64, copy=False)
        shape = arrays[self.input_names[0]].shape
        for name, array in arrays.items():
            if array.shape != shape:
                raise RequestError(f"inputs must share one shape: {self.input_names[0]} {list(shape)}, "
                                   f"{name} {list(array.shape)}")
        if shape[0] == 0 or shape[1] == 0:
            raise RequestError(f"empty input of shape {list(shape)}")
        if self.max_positions and shape[1] > self.max_positions:
            raise RequestError(f"{shape[1]} tokens exceed the model's maximum of {self.max_positions}")
        for name, array in arrays.items():
            limit = self.limits.get(name)
            if limit and (array.min() < 0 or array.max() >= limit):
                raise RequestError(f"input {name!r} has values outside [0, {limit})")
        mask = arrays.get("attention_mask")
        if mask is not None and not mask.any(axis=1).all():
            raise RequestError("every row needs at least one token with attention_mask 1")
        return arrays

    def execute(self, requests):
        responses = [None] * len(requests)
        good = []  # (index, arrays)
        for index, request in enumerate(requests):
            try:
                good.append((index, self._read(request)))
            except RequestError as exc:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        shapes = [arrays[self.input_names[0]].shape for _, arrays in good]
        for group in self.plan_passes([t for _, t in shapes], self.pass_limits, [b for b, _ in shapes]):
            members = [good[i] for i in group]
            try:
                self._run(members, responses)
            except Exception as exc:  # noqa: BLE001 - the pass's requests get the error, Triton lives on
                pb_utils.Logger.log_error(f"hfserve: forward failed: {exc!r}")
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(f"forward failed: {exc}"))
            self._send_early(requests, responses, [index for index, _ in members])
        return self._remaining(requests, responses)

    def _send_early(self, requests, responses, indices):
        """Answers these requests now through their response senders (Triton >= 23.10 allows it for non-decoupled
        models), so requests of shorter passes are not held until the whole execute() returns."""
        if not self.early_responses:
            return
        for index in indices:
            self._send(requests[index], responses[index])
            responses[index] = SENT

    def _remaining(self, requests, responses):
        if not self.early_responses:
            return responses
        for index, response in enumerate(responses):
            if response is not SENT:  # invalid requests: no pass ran them
                self._send(requests[index], response)
        return None

    @staticmethod
    def _send(request, response):
        try:
            request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # noqa: BLE001 - e.g. the client went away: the other requests still get answers
            pb_utils.Logger.log_warn(f"hfserve: could not send a response: {exc!r}")

    def _run(self, good, responses):
        longest = max(arrays[self.input_names[0]].shape[1] for _, arrays in good)
        total = sum(arrays[self.input_names[0]].shape[0] for _, arrays in good)
        batch = {}
        for name in self.input_names:
            merged = np.full((total, longest), self.pad_values.get(name, 0), dtype=np.int64)
            row = 0
            for _, arrays in good:
                b, t = arrays[name].shape
                merged[row:row + b, :t] = arrays[name]
                row += b
            batch[name] = merged
        outputs = self.engine.forward(batch)
        row = 0
        for index, arrays in good:
            b, t = arrays[self.input_names[0]].shape
            tensors = []
            for name in self.output_names:
                part = outputs[name][row:row + b]
                if self.token_level[name]:
                    part = part[:, :t]
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(part, dtype=np.float32)))
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            row += b

    def finalize(self):
        self.engine = None
