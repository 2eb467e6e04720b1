"""Request bodies of the OpenAI endpoints we serve (fields after OpenAI's API reference)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    truncate: bool | None = None  # extension: cut over-long inputs (default: the server's --auto_truncate)
    prompt_name: str | None = None  # extension: one of the checkpoint's sentence-transformers prompts
    prompt: str | None = None  # extension: a prompt text of the client's own
    input_type: str | None = None  # extension (vLLM / Cohere): search_query, search_document, ... -> a prompt


class _Sampling(_Request):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    seed: int | None = None
    user: str | None = None

    def sampling(self) -> dict:
        return self.model_dump(include={"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                                        "seed"}, exclude_none=True)


class CompletionRequest(_Sampling):
    prompt: str | list[str]


class ContentPart(_Request):
    type: str
    text: str | None = None  # a "text" part's text; other part types (images, audio) are ignored


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
