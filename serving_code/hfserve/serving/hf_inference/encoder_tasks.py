"""The Inference API's encoder tasks over the served model's EncoderService: request `inputs` and `parameters`
in, the Inference API's output shapes out. A single string answers with one result, a list with one per string."""

from typing import Any

from ...core.encoder_service import ACTIVATIONS, EncoderService
from ...errors import InvalidRequest
from ...tasks import Task
from ...tasks.params import RequestParams

FEATURE_EXTRACTION_PARAMETERS = ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions",
                                 "encoding_format")


class EncoderTasks:
    """Answers `POST /` for one served encoder model (in-process or Triton-backed: the same service)."""

    def __init__(self, service: EncoderService):
        self.service = service

    async def answer(self, inputs: Any, parameters: dict, body: dict) -> Any:
        task = self.service.task
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
        raise InvalidRequest(f"task {task} is not served on this route")

    # --- feature extraction and sentence similarity ---------------------------------------------

    async def feature_extraction(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, FEATURE_EXTRACTION_PARAMETERS)
        if parameters.get("encoding_format") not in (None, "float"):
            raise InvalidRequest("only encoding_format 'float' is supported on this route")
        params = RequestParams.parse({k: parameters.get(k) for k in ("normalize", "truncate", "truncation_direction",
                                                                    "prompt_name", "dimensions")})
        vectors, _ = await self.service.embed(texts, params.normalize, params.truncate, params.truncation_direction,
                                              prompt_name=params.prompt_name, dimensions=params.dimensions)
        return vectors[0] if single else vectors

    async def sentence_similarity(self, inputs: dict) -> list[float]:
        source, sentences = inputs.get("source_sentence"), inputs.get("sentences")
        if not isinstance(source, str) or not isinstance(sentences, list) or not sentences or not all(
                isinstance(s, str) for s in sentences):
            raise InvalidRequest("sentence similarity takes inputs {'source_sentence': str, 'sentences': [str, ...]}")
        return await self.service.similarity(source, sentences)

    # --- classification ---------------------------------------------------------------------------

    async def text_classification(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts_or_pair(inputs)
        _only(parameters, ("top_k", "function_to_apply"))
        top_k = _positive_int(parameters, "top_k")
        function = parameters.get("function_to_apply")  # None: the checkpoint's own, as transformers' pipeline
        if function is not None and function not in ACTIVATIONS:
            raise InvalidRequest("'function_to_apply' must be 'softmax', 'sigmoid' or 'none'")
        answers, _ = await self.service.classify(texts, activation=function)
        answers = [ranked[:top_k] if top_k else ranked for ranked in answers]
        return [answers[0]] if single else answers

    async def token_classification(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, ("aggregation_strategy", "ignore_labels", "stride"))
        if parameters.get("aggregation_strategy") not in (None, "simple"):
            raise InvalidRequest("only aggregation_strategy 'simple' is supported (entities grouped from B-/I- "
                                 "tokens)")
        if parameters.get("stride") not in (None, 0):
            raise InvalidRequest("'stride' is not supported: inputs are truncated to the model's limit")
        ignore = parameters.get("ignore_labels") or []
        if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
            raise InvalidRequest("'ignore_labels' must be a list of labels")
        results, _ = await self.service.token_classify(texts)
        results = [[e for e in entities if e["entity_group"] not in ignore] for entities in results]
        return results[0] if single else results

    async def fill_mask(self, inputs: Any, parameters: dict) -> list:
        texts, single = _texts(inputs)
        _only(parameters, ("top_k", "targets"))
        if parameters.get("targets") is not None:
            raise InvalidRequest("'targets' is not supported; use top_k")
        results, _ = await self.service.fill_mask(texts, parameters.get("top_k"))
        return results[0] if single else results


def _texts(inputs: Any) -> tuple[list[str], bool]:
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, list) and all(isinstance(t, str) for t in inputs):
        return inputs, False
    raise InvalidRequest("'inputs' must be a string or a list of strings")


def _texts_or_pair(inputs: Any) -> tuple[list, bool]:
    """Classification also takes one text pair, {"text": ..., "text_pair": ...} (cross-encoders, NLI)."""
    if isinstance(inputs, dict):
        text, pair = inputs.get("text"), inputs.get("text_pair")
        if not isinstance(text, str) or not isinstance(pair, str) or set(inputs) - {"text", "text_pair"}:
            raise InvalidRequest("a text pair is {'text': str, 'text_pair': str}")
        return [(text, pair)], True
    return _texts(inputs)


def _only(parameters: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown parameters {unknown}; this task takes {sorted(known)}")


def _positive_int(parameters: dict, name: str) -> int | None:
    value = parameters.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidRequest(f"'{name}' must be a positive integer")
    return value
