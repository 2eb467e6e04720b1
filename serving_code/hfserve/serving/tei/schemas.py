"""Request bodies of the TEI routes and of the Cohere/Jina-style rerank route (fields after their APIs)."""

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from ...tasks.params import InvalidRequest, truncation_direction


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Truncation(_Request):
    truncate: StrictBool | None = None  # None: the server's --auto_truncate
    truncation_direction: StrictStr = "right"

    @field_validator("truncation_direction")
    @classmethod
    def _direction(cls, value: str) -> str:
        try:
            return truncation_direction(value)
        except InvalidRequest as error:
            raise ValueError(str(error)) from None


class EmbedRequest(_Truncation):
    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = None  # Matryoshka: the first N dimensions (renormalized when normalizing)


class SimilarityInputs(_Request):
    source_sentence: StrictStr
    sentences: list[StrictStr] = Field(min_length=1)


class SimilarityParameters(_Truncation):
    prompt_name: StrictStr | None = None


class SimilarityRequest(_Request):
    """TEI's /similarity, in the Inference API's sentence-similarity shape."""

    inputs: SimilarityInputs
    parameters: SimilarityParameters = Field(default_factory=SimilarityParameters)


class PredictRequest(_Truncation):
    # a text; [text, text_pair] (ONE pair, as TEI reads a two-string list); a list of texts; a list of
    # [text] / [text, text_pair] lists
    inputs: StrictStr | list[StrictStr] | list[list[StrictStr]]
    raw_scores: StrictBool = False


class RerankRequest(_Truncation):
    query: StrictStr
    texts: list[StrictStr] = Field(min_length=1)
    raw_scores: StrictBool = False
    return_text: StrictBool = False


class TokenizeRequest(_Request):
    inputs: StrictStr | list[StrictStr]
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None


class DecodeRequest(_Request):
    ids: list[StrictInt] | list[list[StrictInt]]
    skip_special_tokens: StrictBool = True


class Document(_Request):
    text: StrictStr


class DocumentsRerankRequest(_Truncation):
    """Cohere / Jina / vLLM style: documents as strings or {"text": ...}, top_n, return_documents."""

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr | Document] = Field(min_length=1)
    top_n: StrictInt | None = Field(default=None, ge=0)  # None or 0: every document
    return_documents: StrictBool = True
    raw_scores: StrictBool = False

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]
