"""sentence-transformers prompts: `prompts` and `default_prompt_name` from config_sentence_transformers.json,
applied as `SentenceTransformer.encode` applies them: the prompt text is put in front of every input before it is
tokenized (so truncation counts its tokens), chosen per request by `prompt` (free text, wins), `prompt_name`, or
else the server's default (--default_prompt / --default_prompt_name, else the checkpoint's default_prompt_name).

Cohere's and vLLM's `input_type` names a use, not a prompt: it selects the checkpoint's prompt of that use where
it has one (INPUT_TYPE_PROMPTS), and nothing otherwise.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidRequest

# input_type -> prompt names a checkpoint may use for it, first match wins
INPUT_TYPE_PROMPTS = {
    "search_query": ("query", "search_query", "retrieval_query", "Retrieval-query", "retrieval"),
    "search_document": ("document", "passage", "search_document", "retrieval_document", "Retrieval-document"),
    "classification": ("classification", "Classification"),
    "clustering": ("clustering", "Clustering"),
}
MAX_PROMPT_CHARS = 4096


@dataclass(frozen=True)
class Prompts:
    prompts: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None
    default_text: str | None = None  # --default_prompt: wins over any default name

    @classmethod
    def read(cls, model_dir: Path, default_name: str | None = None, default_text: str | None = None) -> "Prompts":
        """The checkpoint's prompts; the server's --default_prompt_name must be one of them."""
        path = Path(model_dir) / "config_sentence_transformers.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        prompts = {str(k): str(v) for k, v in (config.get("prompts") or {}).items()}
        name = default_name if default_name is not None else config.get("default_prompt_name")
        if name is not None and name not in prompts:
            source = "--default_prompt_name" if default_name is not None else f"{path}'s default_prompt_name"
            raise ValueError(f"{source} {name!r} is not one of the checkpoint's prompts {sorted(prompts)}")
        return cls(prompts=prompts, default_name=name, default_text=default_text)

    def choose(self, prompt_name: str | None = None, prompt: str | None = None,
               input_type: str | None = None) -> str:
        """The prompt text for one request (possibly empty)."""
        if prompt is not None:
            if len(prompt) > MAX_PROMPT_CHARS:
                raise InvalidRequest(f"'prompt' is longer than {MAX_PROMPT_CHARS} characters")
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                have = sorted(self.prompts)
                raise InvalidRequest(f"prompt_name {prompt_name!r} is not one of this model's prompts: "
                                     + (", ".join(repr(p) for p in have) if have else "it has none"))
            return self.prompts[prompt_name]
        if input_type is not None:
            if input_type not in INPUT_TYPE_PROMPTS:
                raise InvalidRequest(f"input_type {input_type!r} is not one of {sorted(INPUT_TYPE_PROMPTS)}")
            for name in INPUT_TYPE_PROMPTS[input_type]:
                if name in self.prompts:
                    return self.prompts[name]
        if self.default_text is not None:
            return self.default_text
        return self.prompts.get(self.default_name, "") if self.default_name else ""

    def describe(self) -> dict:
        """For GET /info."""
        return {"prompts": dict(self.prompts), "default_prompt_name": self.default_name,
                **({"default_prompt": self.default_text} if self.default_text is not None else {})}


def apply_prompt(texts: list, prompt: str) -> list:
    return [prompt + t for t in texts] if prompt else texts
