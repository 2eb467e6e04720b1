"""The options every encoder model of either runtime is built from (filled in by hfserve.args)."""

from dataclasses import dataclass
from pathlib import Path

from ..tasks import Task
from ..tasks.tokenization import TokenizerOptions


@dataclass(frozen=True)
class ModelSettings:
    model_name: str
    model_dir: Path
    task: Task
    tokenizer: TokenizerOptions = TokenizerOptions()
    return_probabilities: bool = False
    max_request_items: int = 64
    auto_truncate: bool = True  # cut over-long inputs to the model's limit unless a request says otherwise
