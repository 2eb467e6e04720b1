"""Task logic shared by both runtimes: what a task needs before and after the model.

Nothing here touches torch or a server: both the in-process runtime and the Triton
transformer import these modules, so the same input gives the same JSON from either.
"""

from enum import Enum


class Task(str, Enum):
    TEXT_EMBEDDING = "text_embedding"
    SEQUENCE_CLASSIFICATION = "sequence_classification"
    RERANK = "rerank"  # a cross-encoder: a single-logit sequence classifier scoring (query, document) pairs
    TOKEN_CLASSIFICATION = "token_classification"
    FILL_MASK = "fill_mask"
    TEXT_GENERATION = "text_generation"
    TEXT2TEXT_GENERATION = "text2text_generation"

    @property
    def is_generative(self) -> bool:
        return self in GENERATIVE_TASKS

    def __str__(self) -> str:
        return self.value

    @property
    def model_task(self) -> "Task":
        """The task whose model class and outputs compute this one: a cross-encoder runs as a sequence
        classifier (its logits), reranking is post-processing. Triton's repository names this task."""
        return Task.SEQUENCE_CLASSIFICATION if self == Task.RERANK else self


GENERATIVE_TASKS = frozenset({Task.TEXT_GENERATION, Task.TEXT2TEXT_GENERATION})
# Tasks whose inputs may be text pairs (tokenized together, with token_type_ids telling them apart).
PAIR_TASKS = frozenset({Task.SEQUENCE_CLASSIFICATION, Task.RERANK})
ENCODER_TASKS = frozenset(Task) - GENERATIVE_TASKS
