"""The Inference API's encoder tasks over the shared EncoderTaskModel: request `inputs` and `parameters` in,
the Inference API's output shapes out. A single string answers with one result, a list with one per string."""

import json
from functools import cached_property
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from ...tasks import Task
from ...tasks.handlers import softmax
from ...tasks.params import InputTooLong, InvalidRequest, RequestParams
from .errors import HFError, validation

FEATURE_EXTRACTION_PARAMETERS = ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions",
                                 "encoding_format")


class EncoderTasks:
    """Answers `POST /` for one served encoder model (in-process or Triton-backed: the same interface)."""

    def __init__(self, model):
        self.model = model

    async def answer(self, inputs: Any, parameters: dict, body: dict) -> Any:
        task = self.model.settings.task
        if task == Task.TEXT_EMBEDDING:
            if isinstance(inputs, dict):
                return await self.sentence_similarity(inputs)
            # huggingface_hub sends feature-extraction options beside `inputs`, not inside `parameters`
            root = {k: body[k] for k in FEATURE_EXTRACTION_PARAMETERS if k in body}
            return await self.feature_extraction(inputs, {**root, **parameters})
        if task in (Task.SEQUENCE_CLASSIFICATION, Task.RERANK):
            return await self.text_classification(inputs, parameters)
        if task == Task.TOKEN_CLASSIFICATION:
            return await self.token_classification(inputs, parameters)
        if task == Task.FILL_MASK:
            return await self.fill_mask(inputs, parameters)
        raise validation(f"task {task} is not served on this route")

    # --- feature extraction and sentence similarity ---------------------------------------------

    async def feature_extraction(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, FEATURE_EXTRACTION_PARAMETERS)
        if parameters.get("prompt_name") is not None:
            raise validation("'prompt_name' is not supported: this server has no prompts configured")
        if parameters.get("encoding_format") not in (None, "float"):
            raise validation("only encoding_format 'float' is supported on this route")
        try:
            params = RequestParams.parse({k: parameters.get(k) for k in ("normalize", "truncate",
                                                                         "truncation_direction")})
        except InvalidRequest as error:
            raise validation(str(error)) from None
        vectors = await self._call(self.model.embed(texts, params.normalize, params.truncate,
                                                    params.truncation_direction))
        dimensions = parameters.get("dimensions")
        if dimensions is not None and dimensions != len(vectors[0]):
            raise validation(f"this model returns {len(vectors[0])} dimensions; 'dimensions' cannot change that")
        return vectors[0] if single else vectors

    async def sentence_similarity(self, inputs: dict) -> list[float]:
        source, sentences = inputs.get("source_sentence"), inputs.get("sentences")
        if not isinstance(source, str) or not isinstance(sentences, list) or not sentences or not all(
                isinstance(s, str) for s in sentences):
            raise validation("sentence similarity takes inputs {'source_sentence': str, 'sentences': [str, ...]}")
        vectors = np.asarray(await self._call(self.model.embed([source, *sentences], normalize=True)),
                             dtype=np.float64)
        return [float(v) for v in vectors[1:] @ vectors[0]]

    # --- classification ---------------------------------------------------------------------------

    async def text_classification(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts_or_pair(inputs)
        _only(parameters, ("top_k", "function_to_apply"))
        top_k = _positive_int(parameters, "top_k")
        function = parameters.get("function_to_apply") or self._default_function
        if function not in ("softmax", "sigmoid", "none"):
            raise validation("'function_to_apply' must be 'softmax', 'sigmoid' or 'none'")
        answers = []
        for logits in await self._call(self.model.classify(texts, raw_scores=True)):
            labels = [r["label"] for r in logits]
            scores = _apply(function, np.asarray([r["score"] for r in logits], dtype=np.float64))
            ranked = sorted(({"label": label, "score": float(score)} for label, score in zip(labels, scores)),
                            key=lambda r: -r["score"])
            answers.append(ranked[:top_k] if top_k else ranked)
        return [answers[0]] if single else answers

    @cached_property
    def _default_function(self) -> str:
        """As transformers' pipeline: sigmoid for one label or multi-label checkpoints, softmax otherwise."""
        config = json.loads((Path(self.model.settings.model_dir) / "config.json").read_text())
        multi_label = config.get("problem_type") == "multi_label_classification"
        return "sigmoid" if multi_label or len(self.model.handler.id2label) == 1 else "softmax"

    async def token_classification(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, ("aggregation_strategy", "ignore_labels", "stride"))
        if parameters.get("aggregation_strategy") not in (None, "simple"):
            raise validation("only aggregation_strategy 'simple' is supported (entities grouped from B-/I- tokens)")
        if parameters.get("stride") not in (None, 0):
            raise validation("'stride' is not supported: inputs are truncated to the model's limit")
        ignore = parameters.get("ignore_labels") or []
        if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
            raise validation("'ignore_labels' must be a list of labels")
        results = await self._infer(texts, RequestParams())
        results = [[e for e in entities if e["entity_group"] not in ignore] for entities in results]
        return results[0] if single else results

    async def fill_mask(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, ("top_k", "targets"))
        if parameters.get("targets") is not None:
            raise validation("'targets' is not supported; use top_k")
        try:
            params = RequestParams.parse({"top_k": parameters.get("top_k")})
        except InvalidRequest as error:
            raise validation(str(error)) from None
        results = await self._infer(texts, params)
        return results[0] if single else results

    # --- the shared model ---------------------------------------------------------------------------

    async def _infer(self, texts: list[str], params: RequestParams) -> list:
        return await self._call(self.model.infer_texts(texts, params))

    @staticmethod
    async def _call(operation) -> Any:
        """Awaits a model operation: its results, with the model's refusals as this protocol's errors."""
        try:
            results, _ = await operation
        except InputTooLong as error:
            raise HFError(str(error), status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
        except InvalidRequest as error:
            raise validation(str(error)) from None
        return results


def _texts(inputs: Any) -> tuple[list[str], bool]:
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
        return inputs, False
    raise validation("'inputs' must be a string or a list of strings")


def _texts_or_pair(inputs: Any) -> tuple[list, bool]:
    """Classification also takes one text pair, {"text": ..., "text_pair": ...} (cross-encoders, NLI)."""
    if isinstance(inputs, dict):
        text, pair = inputs.get("text"), inputs.get("text_pair")
        if not isinstance(text, str) or not isinstance(pair, str) or set(inputs) - {"text", "text_pair"}:
            raise validation("a text pair is {'text': str, 'text_pair': str}")
        return [(text, pair)], True
    return _texts(inputs)


def _only(parameters: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise validation(f"unknown parameters {unknown}; this task takes {sorted(known)}")


def _positive_int(parameters: dict, name: str) -> int | None:
    value = parameters.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise validation(f"'{name}' must be a positive integer")
    return value


def _apply(function: str, logits: np.ndarray) -> np.ndarray:
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits
