"""Post-processing per encoder task: the model's named outputs for one text -> that text's JSON result,
and the typed V2 tensors for a whole request. One handler class per task."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from . import Task
from .embedding import finish_embedding, read_pooling_config
from .params import InputTooLong, InvalidRequest, RequestParams
from .tokenization import EncodedText


@dataclass
class V2Output:
    """A typed output tensor, independent of the kserve classes that will carry it."""

    name: str
    datatype: str
    shape: list[int]
    data: list


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def relevance_score(logits: np.ndarray, raw: bool = False) -> float:
    """A cross-encoder's score for one pair: its single logit, or the sigmoid of it (0..1, the default)."""
    logit = float(np.asarray(logits, dtype=np.float64).reshape(-1)[0])
    return logit if raw else float(sigmoid(logit))


def label_scores(logits: np.ndarray, id2label: dict[int, str], raw: bool = False, activation=None) -> list[dict]:
    """Every label with its score, best first: `activation` over the logits (the checkpoint's own, see
    `score_function`; by default softmax, or sigmoid for a single-logit head), or the logits themselves when raw."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    if raw:
        scores = logits
    elif activation is not None:
        scores = np.asarray(activation(logits), dtype=np.float64)
    else:
        scores = sigmoid(logits) if logits.size == 1 else softmax(logits)
    order = np.argsort(-scores, kind="stable")
    return [{"label": id2label.get(int(i), str(int(i))), "score": float(scores[i])} for i in order]


def _json_bytes(results: list) -> list[str]:
    return [json.dumps(r, ensure_ascii=False) for r in results]


class TaskHandler:
    task: Task
    needs_offsets = False

    def __init__(self, tokenizer: PreTrainedTokenizerBase, model_dir: Path, id2label: dict[int, str],
                 return_probabilities: bool = False):
        self.tokenizer = tokenizer
        self.id2label = id2label
        self.return_probabilities = return_probabilities

    def check(self, encoded: list[EncodedText], params: RequestParams | None = None) -> None:
        """Rejects inputs the task cannot answer, or more work than the server's caps allow, before the model."""

    def result(self, outputs: dict[str, np.ndarray], encoded: EncodedText, text: str, params: RequestParams):
        raise NotImplementedError

    def v2_outputs(self, results: list, params: RequestParams) -> list[V2Output]:
        raise NotImplementedError

    def output_metadata(self) -> list[dict]:
        raise NotImplementedError


class EmbeddingHandler(TaskHandler):
    task = Task.TEXT_EMBEDDING

    def __init__(self, tokenizer, model_dir, id2label, return_probabilities=False):
        super().__init__(tokenizer, model_dir, id2label, return_probabilities)
        self.normalize = read_pooling_config(model_dir).normalize

    def vector(self, outputs, params: RequestParams) -> np.ndarray:
        """Normalized as the checkpoint (or the request) says; Matryoshka `dimensions` cut first, so a normalized
        vector is unit length at its new width (as OpenAI and TEI answer, and as sentence-transformers' encode with
        truncate_dim and normalize_embeddings computes it)."""
        normalize = self.normalize if params.normalize is None else params.normalize
        vector = outputs["embeddings"]
        if params.dimensions is not None:
            if params.dimensions > len(vector):
                raise InvalidRequest(f"'dimensions' is {params.dimensions}, but this model's vectors have "
                                     f"{len(vector)}")
            vector = vector[:params.dimensions]
        return finish_embedding(vector, normalize)

    def result(self, outputs, encoded, text, params):
        return self.vector(outputs, params).tolist()

    def v2_outputs(self, results, params):
        width = len(results[0]) if results else 0
        return [V2Output("embedding", "FP32", [len(results), width], [x for r in results for x in r])]

    def output_metadata(self):
        return [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}]


class SequenceClassificationHandler(TaskHandler):
    """Scores as the checkpoint's config asks: an independent sigmoid per label for multi-label (and single-logit)
    heads, raw logits for regression, a softmax over the labels otherwise."""

    task = Task.SEQUENCE_CLASSIFICATION

    def __init__(self, tokenizer, model_dir, id2label, return_probabilities=False):
        super().__init__(tokenizer, model_dir, id2label, return_probabilities)
        self.scores = score_function(json.loads((Path(model_dir) / "config.json").read_text()))

    def _with_probabilities(self, params: RequestParams) -> bool:
        return self.return_probabilities if params.return_probabilities is None else params.return_probabilities

    def result(self, outputs, encoded, text, params):
        probabilities = self.scores(outputs["logits"].astype(np.float64))
        best = int(np.argmax(probabilities))
        result = {"label": self.id2label.get(best, str(best)), "score": float(probabilities[best])}
        if self._with_probabilities(params):
            result["probabilities"] = {self.id2label.get(i, str(i)): float(p) for i, p in enumerate(probabilities)}
        return result

    def v2_outputs(self, results, params):
        tensors = [
            V2Output("label", "BYTES", [len(results)], [r["label"] for r in results]),
            V2Output("score", "FP32", [len(results)], [r["score"] for r in results]),
        ]
        if self._with_probabilities(params):
            rows = [list(r["probabilities"].values()) for r in results]
            tensors.append(V2Output("probabilities", "FP32", [len(rows), len(self.id2label)],
                                    [p for row in rows for p in row]))
        return tensors

    def output_metadata(self):
        meta = [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "score", "datatype": "FP32", "shape": [-1]}]
        if self.return_probabilities:
            meta.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, len(self.id2label)]})
        return meta


def score_function(config: dict):
    """The activation a classification checkpoint's config asks for (pipelines read the same fields)."""
    problem_type = config.get("problem_type")
    if problem_type == "regression":
        return lambda logits: logits
    labels = config.get("num_labels") or len(config.get("id2label") or {}) or 2
    if problem_type == "multi_label_classification" or labels == 1:
        return sigmoid
    return softmax


class RerankHandler(TaskHandler):
    """Cross-encoders: one relevance score per (query, document) pair (or per single text)."""

    task = Task.RERANK

    def __init__(self, tokenizer, model_dir, id2label, return_probabilities=False):
        super().__init__(tokenizer, model_dir, id2label, return_probabilities)
        if len(id2label) > 1:
            raise ValueError(f"task rerank needs a cross-encoder with one output logit; {model_dir} has "
                             f"{len(id2label)} labels: serve it as sequence_classification")

    def result(self, outputs, encoded, text, params):
        return {"score": relevance_score(outputs["logits"], params.raw_scores)}

    def v2_outputs(self, results, params):
        return [V2Output("score", "FP32", [len(results)], [r["score"] for r in results])]

    def output_metadata(self):
        return [{"name": "score", "datatype": "FP32", "shape": [-1]}]


class TokenClassificationHandler(TaskHandler):
    """Entities with character offsets; consecutive B-/I- tokens of one type are grouped into one span."""

    task = Task.TOKEN_CLASSIFICATION
    needs_offsets = True

    def result(self, outputs, encoded, text, params):
        probabilities = softmax(outputs["logits"][: len(encoded)].astype(np.float64))
        special = set(self.tokenizer.all_special_ids)
        entities: list[dict] = []
        current: dict | None = None
        for position, (start, end) in enumerate(encoded.offsets):
            if encoded.input_ids[position] in special or start == end:
                continue
            label_id = int(np.argmax(probabilities[position]))
            prefix, entity_type = _split_label(self.id2label.get(label_id, str(label_id)))
            score = float(probabilities[position][label_id])
            if entity_type is None:
                current = None
                continue
            continues = current is not None and current["entity_group"] == entity_type and prefix != "B"
            if continues:  # as the pipeline's "simple" aggregation: whitespace between tokens does not split a span
                current["end"] = end
                current["_scores"].append(score)
            else:
                current = {"entity_group": entity_type, "start": start, "end": end, "_scores": [score]}
                entities.append(current)
        return [_finish_entity(e, text) for e in entities]

    def v2_outputs(self, results, params):
        return [V2Output("entities", "BYTES", [len(results)], _json_bytes(results))]

    def output_metadata(self):
        return [{"name": "entities", "datatype": "BYTES", "shape": [-1]}]


def _split_label(label: str) -> tuple[str | None, str | None]:
    if label.upper() == "O":
        return None, None
    if len(label) > 2 and label[1] == "-" and label[0] in "BIES":
        return label[0], label[2:]
    return None, label


def _finish_entity(entity: dict, text: str) -> dict:
    scores = entity.pop("_scores")
    return {
        "entity_group": entity["entity_group"],
        "score": float(np.mean(scores)),
        "word": text[entity["start"]: entity["end"]],
        "start": entity["start"],
        "end": entity["end"],
    }


class FillMaskHandler(TaskHandler):
    """Top-k candidates per mask token; one flat list for one mask, a list per mask for several. The model call
    returns only the candidates (engine/encoder.py: MASK_OUTPUTS), and the masks per text and the candidates per
    request are capped before it runs."""

    task = Task.FILL_MASK
    max_masks = 8  # per text (--max_masks)
    max_candidates = 4096  # per request: masks x top_k (--max_fill_mask_candidates)

    def check(self, encoded, params=None):
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise InvalidRequest("this tokenizer has no mask token, so fill_mask cannot be served")
        masks = 0
        for index, e in enumerate(encoded):
            count = e.input_ids.count(mask_id)
            if count == 0:
                raise InvalidRequest(
                    f"instance {index} has no {self.tokenizer.mask_token} token (or it was truncated away)"
                )
            if count > self.max_masks:
                raise InputTooLong(f"instance {index} has {count} {self.tokenizer.mask_token} tokens; this server "
                                   f"fills at most {self.max_masks} per text (--max_masks)")
            masks += count
        top_k = (params or RequestParams()).top_k
        if masks * top_k > self.max_candidates:
            raise InputTooLong(f"{masks} masks x top_k {top_k} = {masks * top_k} candidates; this server returns "
                               f"at most {self.max_candidates} per request (--max_fill_mask_candidates): send "
                               "fewer masks or a smaller top_k")

    def result(self, outputs, encoded, text, params):
        scores, ids = outputs["mask_scores"], outputs["mask_ids"]
        positions = [i for i, t in enumerate(encoded.input_ids) if t == self.tokenizer.mask_token_id]
        per_mask = [self._candidates(scores[p, :params.top_k], ids[p, :params.top_k], p, encoded)
                    for p in positions]
        return per_mask[0] if len(per_mask) == 1 else per_mask

    def _candidates(self, scores: np.ndarray, ids: np.ndarray, position: int, encoded: EncodedText) -> list[dict]:
        candidates = []
        sequence = list(encoded.input_ids)
        for score, token_id in zip(scores.tolist(), ids.astype(np.int64).tolist()):
            sequence[position] = token_id
            candidates.append({
                "score": score,
                "token": token_id,
                "token_str": self.tokenizer.decode([token_id]).strip(),
                "sequence": self.tokenizer.decode(sequence, skip_special_tokens=True),
            })
        return candidates

    def v2_outputs(self, results, params):
        return [V2Output("predictions", "BYTES", [len(results)], _json_bytes(results))]

    def output_metadata(self):
        return [{"name": "predictions", "datatype": "BYTES", "shape": [-1]}]


HANDLERS = {h.task: h for h in (EmbeddingHandler, SequenceClassificationHandler, RerankHandler,
                                TokenClassificationHandler, FillMaskHandler)}


def make_handler(task: Task, tokenizer, model_dir: Path, return_probabilities: bool = False,
                 max_masks: int | None = None, max_candidates: int | None = None) -> TaskHandler:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    handler = HANDLERS[task](tokenizer, Path(model_dir), id2label, return_probabilities)
    if isinstance(handler, FillMaskHandler):
        handler.max_masks = max_masks or handler.max_masks
        handler.max_candidates = max_candidates or handler.max_candidates
    return handler
