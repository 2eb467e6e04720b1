"""Which task a checkpoint serves, from its `config.architectures` (or an explicit --task)."""

import json
from pathlib import Path

from . import Task

# Suffix of the architecture class name -> task. Checked in order; the first match wins.
ARCHITECTURE_SUFFIXES: tuple[tuple[str, Task], ...] = (
    ("ForSequenceClassification", Task.SEQUENCE_CLASSIFICATION),
    ("ForTokenClassification", Task.TOKEN_CLASSIFICATION),
    ("ForMaskedLM", Task.FILL_MASK),
    ("ForCausalLM", Task.TEXT_GENERATION),
    ("LMHeadModel", Task.TEXT_GENERATION),
    ("ForConditionalGeneration", Task.TEXT2TEXT_GENERATION),
    ("Model", Task.TEXT_EMBEDDING),
)


class TaskDetectionError(ValueError):
    """The task cannot be inferred; the message tells the user to pass --task."""


def is_sentence_transformers_checkpoint(model_dir: Path) -> bool:
    return (Path(model_dir) / "modules.json").is_file()


def is_sentence_embedder(model_dir: Path) -> bool:
    """A sentence-transformers checkpoint that pools token states into one vector: an embedder whatever its
    architecture says (decoder embedders such as Qwen3-Embedding ship as *ForCausalLM)."""
    path = Path(model_dir) / "modules.json"
    if not path.is_file():
        return False
    try:
        modules = json.loads(path.read_text())
    except ValueError:
        return False
    return any(str(m.get("type", "")).rsplit(".", 1)[-1] == "Pooling" for m in modules if isinstance(m, dict))


def task_from_architectures(architectures: list[str]) -> Task | None:
    for architecture in architectures:
        for suffix, task in ARCHITECTURE_SUFFIXES:
            if architecture.endswith(suffix):
                return task
    return None


def is_cross_encoder(config: dict) -> bool:
    """A sequence classifier that scores pairs: sentence-transformers' CrossEncoder marks the config it saves,
    and a head with one logit has no labels to choose between (softmax over one logit is always 1), so
    its only meaningful output is a relevance score."""
    if "sbert_ce_default_activation_function" in config:
        return True
    marker = config.get("sentence_transformers")
    if isinstance(marker, dict) and "activation_fn" in marker:
        return True
    return config.get("num_labels") == 1 or len(config.get("id2label") or {}) == 1


def infer_task(model_dir: Path, requested: str | Task | None = None) -> Task:
    """The task to serve: the one requested, else the one the checkpoint's architecture implies."""
    if requested:
        try:
            return Task(requested)
        except ValueError:
            choices = ", ".join(t.value for t in Task)
            raise TaskDetectionError(f"unknown task {requested!r}; choose one of: {choices}") from None
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise TaskDetectionError(f"{config_path} not found: is --model_dir a Hugging Face checkpoint?")
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    task = task_from_architectures(architectures)
    if task in (Task.TEXT_GENERATION, Task.FILL_MASK) and is_sentence_embedder(model_dir):
        task = Task.TEXT_EMBEDDING
    if task == Task.SEQUENCE_CLASSIFICATION and is_cross_encoder(config):
        task = Task.RERANK
    if task is None and is_sentence_transformers_checkpoint(model_dir):
        task = Task.TEXT_EMBEDDING
    if task is None:
        choices = ", ".join(t.value for t in Task)
        raise TaskDetectionError(
            f"cannot infer the task from architectures {architectures or '(none in config.json)'}; "
            f"pass --task, one of: {choices}"
        )
    return task
