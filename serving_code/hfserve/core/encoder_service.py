"""The encoder pipeline, once: every protocol (V1/V2 through serving/kserve_adapter.py, OpenAI, TEI, Cohere/Jina
rerank, the Hugging Face Inference API) calls an EncoderService, and each runtime supplies only where the forward
pass runs (a ForwardBackend: huggingface/in_process_backend.py or transformer/triton_backend.py).

encode:  texts -> token ids           (tasks/tokenization.py; truncation, request limits, the task's input check)
run:     token ids -> model outputs   (the backend; the forward time comes back as a value, for request timing)
results / the task operations: outputs -> plain Python values   (tasks/handlers.py)
So both runtimes answer the same input with the same JSON.

Tokenization and post-processing run in the service's own threads (--tokenizer_workers), never on the event loop:
the Rust tokenizer releases the GIL, and Python post-processing yields it, so probes and other requests are
answered while a large request is tokenized or its results are built.
"""

import asyncio
import contextvars
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson

from ..config import ModelSettings
from ..errors import InputTooLong, InvalidRequest, WrongTask
from ..serving import tracing
from ..serving.metrics import model_work
from ..serving.requests import check_texts
from ..serving.timing import current_timing
from ..tasks import PAIR_TASKS, Task
from ..tasks.handlers import TaskHandler, label_scores, make_handler, relevance_score, sigmoid, softmax
from ..tasks.params import RequestParams
from ..tasks.prompts import Prompts, apply_prompt
from ..tasks.tokenization import (
    PRECUT_CHARS_PER_TOKEN,
    EncodedText,
    TextEncoder,
    effective_max_length,
    load_tokenizer,
)

Rows = list[dict[str, np.ndarray]]  # one dict of named model outputs per text, in the request's order
# Requests this small are tokenized on the event loop: well under a millisecond, less than a worker thread's
# round trip (0.1-0.3 ms measured), which would be most of a batch-1 request's serving overhead.
INLINE_CHARACTERS = 2048
ACTIVATIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": None}


@dataclass
class Forward:
    """What a backend returns for one request's texts."""

    rows: Rows
    forward_seconds: float | None = None  # the forward pass(es) alone; None: all of the wait was inference


class ForwardBackend(Protocol):
    """Where the forward pass runs: all that differs between the runtimes."""

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's token inputs, e.g. ("input_ids", "attention_mask", "token_type_ids"); known after load."""

    @property
    def dtype(self) -> str | None:
        """The weights' dtype where this process knows it (GET /info), else None."""

    def load(self, pad_id: int) -> None:
        """Makes the model callable; `pad_id` is what the backend pads each forward pass's input_ids with."""

    async def forward(self, encoded: list[EncodedText]) -> Forward:
        """Model outputs per text, however the backend groups them into passes."""

    def batching_limits(self) -> dict:
        """{"max_batch_requests", "max_batch_tokens"}: texts and tokens per forward pass, None where unbounded."""

    async def ready(self) -> bool:
        """Whether a forward pass can run now (Triton: whether it has the model ready)."""

    def stop(self) -> None:
        """Releases what load took."""


@dataclass
class Encoded:
    """One request's inputs, tokenized: what `run` takes."""

    texts: list  # str, or (text, text_pair) tuples
    params: RequestParams
    items: list[EncodedText]
    started: float

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.items)


class EncoderService:
    def __init__(self, settings: ModelSettings, backend: ForwardBackend):
        self.settings = settings
        self.backend = backend
        self.text_encoder: TextEncoder | None = None
        self.handler: TaskHandler | None = None
        self.prompts: Prompts | None = None  # text_embedding only
        self.workers = ThreadPoolExecutor(max_workers=settings.tokenizer_workers, thread_name_prefix="tokenize")

    @property
    def name(self) -> str:
        return self.settings.model_name

    @property
    def task(self) -> Task:
        return self.settings.task

    @property
    def max_items(self) -> int:
        """Most texts one embed/classify/... request may hold: --max_request_items, or with
        --auto_split_client_batches the split bound (the pieces run one after another, see run)."""
        return self.settings.split_request_items or self.settings.max_request_items

    @property
    def loaded(self) -> bool:
        return self.handler is not None

    def load(self) -> None:
        settings = self.settings
        tokenizer = load_tokenizer(settings.model_dir, settings.tokenizer)
        self.backend.load(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        max_length = effective_max_length(tokenizer, settings.model_dir, settings.tokenizer.max_length)
        self.text_encoder = TextEncoder(tokenizer, max_length, settings.tokenizer, self.backend.input_names)
        self.handler = make_handler(settings.task, tokenizer, settings.model_dir, settings.return_probabilities,
                                    settings.max_masks, settings.max_fill_mask_candidates)
        if settings.task == Task.TEXT_EMBEDDING:
            self.prompts = Prompts.read(settings.model_dir, settings.default_prompt_name, settings.default_prompt)

    async def ready(self) -> bool:
        return self.loaded and await self.backend.ready()

    def stop(self) -> None:
        self.backend.stop()
        self.workers.shutdown(wait=False, cancel_futures=True)

    async def off_loop(self, function, *args, **kwargs):
        """`function(*args, **kwargs)` in one of the service's worker threads, in this request's context (its
        timing record)."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.workers, call)

    def limits(self) -> dict:
        """The limits a client may want to know (GET /info): tokens per input, then texts and tokens per pass."""
        encoder = self.text_encoder
        return {"max_input_length": encoder.max_length if encoder else None, **self.backend.batching_limits()}

    @property
    def scores_pairs(self) -> bool:
        """Whether the model is a cross-encoder: served as rerank (tasks/detect.py marks single-logit heads so),
        or a sequence classifier whose head has a single logit."""
        return self.task == Task.RERANK or (self.task == Task.SEQUENCE_CLASSIFICATION and self.handler is not None
                                            and len(self.handler.id2label) == 1)

    # --- the pipeline ----------------------------------------------------------------------------
    async def encode(self, texts: list, params: RequestParams | None = None) -> Encoded:
        """Token ids per text (or pair), truncated as the request and --auto_truncate say, checked for the task."""
        with tracing.span("tokenize", texts=len(texts)):
            if _characters(texts) <= INLINE_CHARACTERS:
                return self.encode_now(texts, params)
            return await self.off_loop(self.encode_now, texts, params)

    def encode_now(self, texts: list, params: RequestParams | None = None) -> Encoded:
        """encode, in the calling thread."""
        started = time.perf_counter()
        params = params or RequestParams()
        check_texts(texts, self.max_items)
        if self.task not in PAIR_TASKS and any(isinstance(t, tuple) for t in texts):
            raise InvalidRequest(f"text pairs are accepted by sequence_classification and rerank models; this "
                                 f"model serves {self.task}")
        texts = self._with_prompt(texts, params)
        truncate = self.settings.auto_truncate if params.truncate is None else params.truncate
        items = self.text_encoder.encode(texts, with_offsets=self.handler.needs_offsets, truncate=truncate,
                                         direction=params.truncation_direction)
        self.handler.check(items, params)
        current_timing().add(self.name, "tokenization", time.perf_counter() - started)
        return Encoded(texts=texts, params=params, items=items, started=started)

    def _with_prompt(self, texts: list, params: RequestParams) -> list:
        """text_embedding: the request's (or the default) prompt before every text, as encode() puts it."""
        if self.prompts is None:
            if params.prompt_name is not None or params.prompt is not None:
                raise InvalidRequest(f"prompts apply to text_embedding models; this model serves {self.task}")
            return texts
        return apply_prompt(texts, self.prompts.choose(params.prompt_name, params.prompt, params.input_type))

    async def run(self, encoded: Encoded) -> Forward:
        """The model's outputs per text and the forward time; the wait is recorded as the request's queue and
        inference time."""
        started = time.perf_counter()
        with tracing.span("forward", texts=len(encoded.items), tokens=encoded.tokens), \
                model_work(self.name, len(encoded.items), encoded.tokens):
            forward = await self._forward(encoded.items)
            elapsed = time.perf_counter() - started
            inference = elapsed if forward.forward_seconds is None else min(elapsed, forward.forward_seconds)
            tracing.record("queue", started, started + elapsed - inference)
            tracing.record("inference", started + elapsed - inference, started + elapsed)
        timing = current_timing()
        timing.add(self.name, "queue", elapsed - inference)
        timing.add(self.name, "inference", inference)
        return forward

    async def _forward(self, items: list[EncodedText]) -> Forward:
        """Over --max_request_items texts (--auto_split_client_batches): pieces of --max_request_items, one after
        another, so the request takes the passes its pieces would take sent one by one and leaves room in the
        batcher for other clients; rows come back in the request's order."""
        size = self.settings.max_request_items
        if len(items) <= size:
            return await self.backend.forward(items)
        rows, seconds = [], 0.0
        for start in range(0, len(items), size):
            piece = await self.backend.forward(items[start:start + size])
            rows += piece.rows
            seconds = None if seconds is None or piece.forward_seconds is None else seconds + piece.forward_seconds
        return Forward(rows, seconds)

    async def results(self, encoded: Encoded, rows: Rows) -> list:
        """Each text's result as V1 answers it (tasks/handlers.py)."""
        with tracing.span("postprocess", texts=len(rows)):
            if len(rows) == 1 and self.task != Task.FILL_MASK:  # one text's labels, entities or vector
                return self.results_now(encoded, rows)
            return await self.off_loop(self.results_now, encoded, rows)

    def results_now(self, encoded: Encoded, rows: Rows) -> list:
        answers = [self.handler.result(row, item, text, encoded.params)
                   for row, item, text in zip(rows, encoded.items, encoded.texts)]
        self._finished(encoded)
        return answers

    def _finished(self, encoded: Encoded) -> None:
        current_timing().add(self.name, "compute", time.perf_counter() - encoded.started)

    async def _answer(self, texts: list, params: RequestParams) -> tuple[list, int]:
        encoded = await self.encode(texts, params)
        return await self.results(encoded, (await self.run(encoded)).rows), encoded.tokens

    # --- the task operations: plain values in, plain values and the tokens used out ------------------
    def _require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise WrongTask(f"model {self.name!r} serves {self.task}, which does not {what}")

    async def embed(self, texts: list[str], normalize: bool | None = None, truncate: bool | None = None,
                    truncation_direction: str = "right", *, prompt_name: str | None = None,
                    prompt: str | None = None, input_type: str | None = None,
                    dimensions: int | None = None) -> tuple[list[list[float]], int]:
        """One vector per text (normalize None: as the checkpoint's modules say), after the chosen prompt
        (tasks/prompts.py), cut to Matryoshka `dimensions` before normalizing."""
        self._require(self.task == Task.TEXT_EMBEDDING, "produce embeddings")
        params = RequestParams.parse({"normalize": normalize, "truncate": truncate,
                                      "truncation_direction": truncation_direction, "prompt_name": prompt_name,
                                      "prompt": prompt, "input_type": input_type, "dimensions": dimensions})
        return await self._answer(texts, params)

    async def similarity(self, source: str, sentences: list[str], truncate: bool | None = None,
                         truncation_direction: str = "right", prompt_name: str | None = None) -> list[float]:
        """The cosine similarity of each sentence to the source sentence (HF Inference and TEI sentence similarity)."""
        vectors, _ = await self.embed([source, *sentences], True, truncate, truncation_direction,
                                      prompt_name=prompt_name)
        vectors = np.asarray(vectors, dtype=np.float64)
        return [float(v) for v in vectors[1:] @ vectors[0]]

    async def classify(self, inputs: list, activation: str | None = None, truncate: bool | None = None,
                       truncation_direction: str = "right") -> tuple[list[list[dict]], int]:
        """Every label with its score, best first, per text or (text, text_pair) pair. `activation` None: the
        checkpoint's own (tasks/handlers.py score_function: sigmoid for multi-label and single-logit heads, raw
        for regression, else softmax); or "softmax", "sigmoid", "none" (the logits)."""
        self._require(self.task in PAIR_TASKS, "classify texts")
        if activation is not None and activation not in ACTIVATIONS:
            raise InvalidRequest(f"the activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        encoded = await self.encode(inputs, RequestParams(truncate=truncate,
                                                          truncation_direction=truncation_direction))
        rows = (await self.run(encoded)).rows
        function = getattr(self.handler, "scores", None) if activation is None else ACTIVATIONS[activation]
        scores = await self.off_loop(lambda: [label_scores(row["logits"], self.handler.id2label, activation == "none",
                                                           function) for row in rows])
        self._finished(encoded)
        return scores, encoded.tokens

    async def rerank(self, query: str, documents: list[str], raw_scores: bool = False, truncate: bool | None = None,
                     truncation_direction: str = "right") -> tuple[list[float], int]:
        """The relevance of each document to the query, in the documents' order."""
        self._require(self.scores_pairs, "score (query, document) pairs: serve a cross-encoder (--task rerank)")
        params = RequestParams(truncate=truncate, truncation_direction=truncation_direction)
        encoded = await self.encode([(query, d) for d in documents], params)  # the query tokenized once
        scores = [relevance_score(row["logits"], raw_scores) for row in (await self.run(encoded)).rows]
        self._finished(encoded)
        return scores, encoded.tokens

    async def token_classify(self, texts: list[str]) -> tuple[list[list[dict]], int]:
        """The entities of each text, with character offsets (consecutive B-/I- tokens grouped)."""
        self._require(self.task == Task.TOKEN_CLASSIFICATION, "classify tokens")
        return await self._answer(texts, RequestParams())

    async def fill_mask(self, texts: list[str], top_k: int | None = None) -> tuple[list, int]:
        """The top_k candidates per mask token of each text."""
        self._require(self.task == Task.FILL_MASK, "fill masks")
        return await self._answer(texts, RequestParams.parse({"top_k": top_k}))

    async def tokenize_json(self, texts: list, add_special_tokens: bool = True,
                            prompt_name: str | None = None) -> bytes:
        """tokenize's answer as JSON bytes, built in a worker thread: no per-object encoder on the event loop."""
        return await self.off_loop(lambda: orjson.dumps(self.tokenize(texts, add_special_tokens, prompt_name)))

    async def decode_json(self, ids: list[list[int]], skip_special_tokens: bool = True) -> bytes:
        """decode's answer as JSON bytes, built in a worker thread."""
        return await self.off_loop(lambda: orjson.dumps(self.decode(ids, skip_special_tokens)))

    def tokenize(self, texts: list, add_special_tokens: bool = True,
                 prompt_name: str | None = None) -> list[list[dict]]:
        """Tokens per text (never truncated), after the prompt embed would put first: id, text, whether special,
        character span in the prompted input."""
        check_texts(texts, self.settings.max_request_items)
        texts = self._with_prompt(texts, RequestParams(prompt_name=prompt_name))
        tokenizer = self.text_encoder.tokenizer
        special = set(tokenizer.all_special_ids)
        result, budget = [], self.settings.max_tokenize_tokens
        for text in texts:
            self._check_tokenize_budget(text, budget, add_special_tokens)
            encoding = tokenizer(text, add_special_tokens=add_special_tokens, truncation=False,
                                 return_offsets_mapping=tokenizer.is_fast)
            budget -= len(encoding["input_ids"])
            if budget < 0:
                raise self._over_tokenize_budget()
            spans = encoding.get("offset_mapping") or [(0, 0)] * len(encoding["input_ids"])
            tokens = []
            for token_id, (start, stop) in zip(encoding["input_ids"], spans):
                is_special = token_id in special
                piece = tokenizer.convert_ids_to_tokens(token_id) if is_special or start == stop else text[start:stop]
                tokens.append({"id": int(token_id), "text": piece, "special": is_special,
                               "start": None if is_special else int(start), "stop": None if is_special else int(stop)})
            result.append(tokens)
        return result

    def _check_tokenize_budget(self, text: str, budget: int, add_special_tokens: bool) -> None:
        """Refuse a text whose beginning alone is over the request's token budget, before tokenizing all of it
        (1 MiB of "." is a million tokens: seconds of work and a 70 MB answer). Tokens of a cut text can exceed the
        whole text's only at the cut word (WordPiece turns a word over 100 characters into one [UNK]), hence the
        margin."""
        limit = (budget + 1) * PRECUT_CHARS_PER_TOKEN
        if len(text) <= limit:
            return
        tokenizer = self.text_encoder.tokenizer
        head = tokenizer(text[:limit], add_special_tokens=add_special_tokens, truncation=False)["input_ids"]
        if len(head) > budget + 128:
            raise self._over_tokenize_budget()

    def _over_tokenize_budget(self) -> InputTooLong:
        return InputTooLong(f"/tokenize returns at most {self.settings.max_tokenize_tokens} tokens per request "
                            "(--max_tokenize_tokens); these inputs have more: send fewer or shorter texts")

    def decode(self, ids: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
        check_texts(ids, self.settings.max_request_items)
        count, cap = sum(len(sequence) for sequence in ids), self.settings.max_decode_tokens
        if count > cap:
            raise InputTooLong(f"/decode takes at most {cap} token ids per request (--max_decode_tokens); this one "
                               f"has {count}: send fewer or shorter sequences")
        tokenizer = self.text_encoder.tokenizer
        vocab_size = len(tokenizer)
        for row, sequence in enumerate(ids):
            bad = [i for i in sequence if not 0 <= i < vocab_size]
            if bad:
                raise InvalidRequest(f"ids[{row}] has {bad[:3]}; token ids run from 0 to {vocab_size - 1}")
        return [tokenizer.decode(sequence, skip_special_tokens=skip_special_tokens) for sequence in ids]


def _characters(texts) -> int:
    """The characters of a request's texts and pairs; anything else counts as over INLINE_CHARACTERS (the worker
    thread's encode refuses it)."""
    total = 0
    for text in texts if isinstance(texts, list) else ():
        parts = text if isinstance(text, tuple) else (text,)
        if not all(isinstance(part, str) for part in parts):
            return INLINE_CHARACTERS + 1
        total += sum(len(part) for part in parts)
    return total if isinstance(texts, list) else INLINE_CHARACTERS + 1


def split_rows(outputs: dict[str, np.ndarray], count: int) -> Rows:
    """A batch's named outputs -> one dict of outputs per text."""
    return [{name: value[row] for name, value in outputs.items()} for row in range(count)]
