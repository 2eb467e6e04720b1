"""The kserve Model both runtimes serve encoder tasks with.

preprocess: request -> texts -> token ids      (tasks.tokenization)
predict:    token ids -> named model outputs   (run_model: in-process batcher, or Triton over gRPC)
postprocess: outputs -> per-text JSON -> V1 predictions or V2 tensors   (tasks.handlers)
Only `run_model` differs between the runtimes, so both answer the same input with the same JSON.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from ..config import ModelSettings
from ..tasks import PAIR_TASKS
from ..tasks.handlers import V2Output, make_handler
from ..tasks.params import InvalidRequest, RequestParams
from ..tasks.tokenization import EncodedText, TextEncoder, effective_max_length, load_tokenizer
from .encoder_operations import EncoderOperations
from .requests import TEXT_INPUT, ParsedRequest, check_texts, parse_request
from .timing import current_timing

# A runtime that batches across requests may put the seconds of the forward pass that computed a row under this
# key of the row's outputs; the rest of the time the row waited counts as queue time.
FORWARD_SECONDS = "_forward_seconds"


@dataclass
class Job:
    """One request on its way through preprocess -> predict -> postprocess."""

    request: ParsedRequest
    encoded: list[EncodedText]
    results: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


class EncoderTaskModel(EncoderOperations, Model):
    def __init__(self, settings: ModelSettings):
        super().__init__(settings.model_name)
        self.settings = settings
        self.text_encoder: TextEncoder | None = None
        self.handler = None

    # --- what a runtime supplies -------------------------------------------------------------
    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's token inputs, e.g. ("input_ids", "attention_mask", "token_type_ids")."""
        raise NotImplementedError

    async def run_model(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass over a padded batch: int64 [B, T] inputs -> named float32 outputs [B, ...]."""
        raise NotImplementedError

    async def run_encoded(self, encoded: list[EncodedText]) -> list[dict[str, np.ndarray]]:
        """Model outputs per text. The default pads the request as one batch; runtimes may batch across requests."""
        return split_rows(await self.run_model(self.text_encoder.pad(encoded)), len(encoded))

    # --- shared by both runtimes -----------------------------------------------------------
    def load_text_side(self) -> None:
        settings = self.settings
        tokenizer = load_tokenizer(settings.model_dir, settings.tokenizer)
        max_length = effective_max_length(tokenizer, settings.model_dir, settings.tokenizer.max_length)
        self.text_encoder = TextEncoder(tokenizer, max_length, settings.tokenizer, self.input_names)
        self.handler = make_handler(settings.task, tokenizer, settings.model_dir, settings.return_probabilities)

    def validate(self, payload):
        return payload

    async def preprocess(self, payload: dict | InferRequest, headers: dict | None = None) -> Job:
        try:
            request = parse_request(payload, self.settings.max_request_items)
            return self._encode(request)
        except InvalidRequest as error:
            raise InvalidInput(str(error)) from None

    def batching_limits(self) -> dict:
        """The batch limits the server applies (GET /info): texts per forward pass and tokens per forward pass
        (None where there is no such limit)."""
        return {"max_batch_requests": None, "max_batch_tokens": None}

    def _encode(self, request: ParsedRequest) -> Job:
        job_started = time.perf_counter()
        if self.settings.task not in PAIR_TASKS and any(isinstance(t, tuple) for t in request.texts):
            raise InvalidRequest(f"text pairs are accepted by sequence_classification and rerank models; this "
                                 f"model serves {self.settings.task}")
        params = request.params
        truncate = self.settings.auto_truncate if params.truncate is None else params.truncate
        encoded = self.text_encoder.encode(request.texts, with_offsets=self.handler.needs_offsets,
                                           truncate=truncate, direction=params.truncation_direction)
        self.handler.check(encoded)
        current_timing().add(self.name, "tokenization", time.perf_counter() - job_started)
        return Job(request=request, encoded=encoded, started=job_started)

    async def run_timed(self, encoded: list[EncodedText]) -> list[dict[str, np.ndarray]]:
        """run_encoded, with the wait split into queue and inference time for the request's timing."""
        started = time.perf_counter()
        outputs = await self.run_encoded(encoded)
        elapsed = time.perf_counter() - started
        forward = [row.pop(FORWARD_SECONDS) for row in outputs if FORWARD_SECONDS in row]
        inference = min(elapsed, max(forward)) if forward else elapsed
        timing = current_timing()
        timing.add(self.name, "queue", elapsed - inference)
        timing.add(self.name, "inference", inference)
        return outputs

    def finish_timing(self, job: Job) -> None:
        current_timing().add(self.name, "compute", time.perf_counter() - job.started)

    async def predict(self, job: Job, headers: dict | None = None) -> Job:
        outputs = await self.run_timed(job.encoded)
        params = job.request.params
        job.results = [
            self.handler.result(out, enc, text, params)
            for out, enc, text in zip(outputs, job.encoded, job.request.texts)
        ]
        self.finish_timing(job)
        return job

    async def postprocess(self, job: Job, headers: dict | None = None) -> dict | InferResponse:
        if not job.request.is_v2:
            return {"predictions": job.results}
        tensors = self.handler.v2_outputs(job.results, job.request.params)
        return InferResponse(
            model_name=self.name,
            response_id=job.request.response_id,
            use_binary_outputs=job.request.binary_outputs,
            infer_outputs=[to_infer_output(t) for t in tensors],
        )

    async def infer_texts(self, texts: list, params: RequestParams | None = None) -> tuple[list, int]:
        """For routes outside kserve's dataplane (OpenAI): results per text and the number of tokens used."""
        check_texts(texts, self.settings.max_request_items)
        job = self._encode(ParsedRequest(texts=texts, params=params or RequestParams()))
        await self.predict(job)
        return job.results, sum(len(e) for e in job.encoded)

    async def run_inputs(self, texts: list, params: RequestParams) -> tuple[list[dict[str, np.ndarray]], list]:
        """The raw model outputs per text (or pair) and the encoded inputs, with truncation and timing applied."""
        check_texts(texts, self.settings.max_request_items)
        job = self._encode(ParsedRequest(texts=texts, params=params))
        outputs = await self.run_timed(job.encoded)
        self.finish_timing(job)
        return outputs, job.encoded

    def get_input_types(self) -> list[dict]:
        return [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return self.handler.output_metadata() if self.handler else []


def to_infer_output(tensor: V2Output) -> InferOutput:
    if tensor.datatype == "BYTES":
        data = np.array([s.encode("utf-8") for s in tensor.data], dtype=np.object_).reshape(tensor.shape)
    else:
        data = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    output = InferOutput(name=tensor.name, shape=tensor.shape, datatype=tensor.datatype)
    output.set_data_from_numpy(data, binary_data=False)
    return output


def split_rows(outputs: dict[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """A batch's named outputs -> one dict of outputs per text."""
    return [{name: value[row] for name, value in outputs.items()} for row in range(count)]
