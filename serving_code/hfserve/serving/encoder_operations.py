"""Task-level operations of a served encoder model, for routes outside kserve's dataplane (TEI routes, the
rerank routes, the Hugging Face Inference API task route, OpenAI embeddings).

Each takes plain Python values and returns plain Python values; truncation, request limits and timing are
applied the same way as on V1 / V2. Inputs that do not fit the served task raise WrongTask; inputs the task
cannot take raise InvalidRequest (InputTooLong when over the token limit with truncation off).
"""

from ..errors import WrongTask
from ..tasks import PAIR_TASKS, Task
from ..tasks.handlers import label_scores, relevance_score
from ..tasks.params import InvalidRequest, RequestParams


class EncoderOperations:
    """Mixed into EncoderTaskModel; relies on its settings, handler, text_encoder and run_inputs."""

    @property
    def task(self) -> Task:
        return self.settings.task

    @property
    def scores_pairs(self) -> bool:
        """Whether the model is a cross-encoder: rerank, or a sequence classifier with a single logit."""
        return self.task == Task.RERANK or (self.task == Task.SEQUENCE_CLASSIFICATION
                                            and len(self.handler.id2label) == 1)

    def _require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise WrongTask(f"this model serves {self.task}, which does not {what}")

    async def embed(self, texts: list[str], normalize: bool | None = None, truncate: bool | None = None,
                    truncation_direction: str = "right") -> tuple[list[list[float]], int]:
        """One vector per text (normalize None: as the checkpoint's pooling config says) and the tokens used."""
        self._require(self.task == Task.TEXT_EMBEDDING, "produce embeddings")
        params = RequestParams(normalize=normalize, truncate=truncate, truncation_direction=truncation_direction)
        outputs, encoded = await self.run_inputs(texts, params)
        return [self.handler.vector(row, params).tolist() for row in outputs], _tokens(encoded)

    async def classify(self, inputs: list, raw_scores: bool = False, truncate: bool | None = None,
                       truncation_direction: str = "right") -> tuple[list[list[dict]], int]:
        """Every label with its score, best first, per text or (text, text_pair) pair; and the tokens used."""
        self._require(self.task in PAIR_TASKS, "classify texts")
        params = RequestParams(truncate=truncate, truncation_direction=truncation_direction)
        outputs, encoded = await self.run_inputs(inputs, params)
        activation = getattr(self.handler, "scores", None)  # multi-label heads: one sigmoid per label
        return ([label_scores(row["logits"], self.handler.id2label, raw_scores, activation) for row in outputs],
                _tokens(encoded))

    async def rerank(self, query: str, documents: list[str], raw_scores: bool = False, truncate: bool | None = None,
                     truncation_direction: str = "right") -> tuple[list[float], int]:
        """The relevance of each document to the query, in the documents' order, and the tokens used."""
        self._require(self.scores_pairs, "score (query, document) pairs: serve a cross-encoder (--task rerank)")
        params = RequestParams(truncate=truncate, truncation_direction=truncation_direction)
        outputs, encoded = await self.run_inputs([(query, d) for d in documents], params)
        return [relevance_score(row["logits"], raw_scores) for row in outputs], _tokens(encoded)

    def tokenize(self, texts: list, add_special_tokens: bool = True) -> list[list[dict]]:
        """Tokens per text (never truncated): id, text, whether special, character span in the input."""
        tokenizer = self.text_encoder.tokenizer
        special = set(tokenizer.all_special_ids)
        result = []
        for text in texts:
            encoding = tokenizer(text, add_special_tokens=add_special_tokens, truncation=False,
                                 return_offsets_mapping=tokenizer.is_fast)
            spans = encoding.get("offset_mapping") or [(0, 0)] * len(encoding["input_ids"])
            tokens = []
            for token_id, (start, stop) in zip(encoding["input_ids"], spans):
                is_special = token_id in special
                piece = tokenizer.convert_ids_to_tokens(token_id) if is_special or start == stop else text[start:stop]
                tokens.append({"id": int(token_id), "text": piece, "special": is_special,
                               "start": None if is_special else int(start), "stop": None if is_special else int(stop)})
            result.append(tokens)
        return result

    def decode(self, ids: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
        tokenizer = self.text_encoder.tokenizer
        vocab_size = len(tokenizer)
        for row, sequence in enumerate(ids):
            bad = [i for i in sequence if not 0 <= i < vocab_size]
            if bad:
                raise InvalidRequest(f"ids[{row}] has {bad[:3]}; token ids run from 0 to {vocab_size - 1}")
        return [tokenizer.decode(sequence, skip_special_tokens=skip_special_tokens) for sequence in ids]


def _tokens(encoded) -> int:
    return sum(len(e) for e in encoded)
