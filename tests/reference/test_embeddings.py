"""text_embedding on both runtimes against sentence-transformers, which shares no code with our engine.

Pooling (mean, CLS, max) and the Normalize module come from each checkpoint's sentence-transformers files;
`normalize` per request overrides the module. A text longer than the model's window is cut as
sentence-transformers cuts it (max_seq_length).
"""

from functools import cache

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize

from devkit.tiny_models import SENTENCES

from .conftest import SLOW_START, TRITON_ENCODERS, predict

pytestmark = SLOW_START

TEXTS = ["Paris is the capital of France.", "the cat sat on the mat", "x", " ".join(SENTENCES)]
MODELS = {"minilm": "mean", "embed": "mean", "embed_cls": "cls", "embed_max": "max"}


@cache
def reference(path: str, normalize: bool | None):
    """sentence-transformers' model for `path`: as declared (None), or with the Normalize module forced on/off."""
    model = SentenceTransformer(path, device="cpu")
    if normalize is None:
        return model
    modules = [m for m in model if not isinstance(m, Normalize)]
    return SentenceTransformer(modules=[*modules, Normalize()] if normalize else modules, device="cpu")


@pytest.mark.parametrize("runtime,name", [("huggingface", name) for name in MODELS] +
                         [("triton", name) for name in MODELS if name in TRITON_ENCODERS])
def test_embeddings_equal_sentence_transformers(served, model_dir, runtime, name):
    declared = reference(str(model_dir(name)), None)
    assert declared[1].pooling_mode == MODELS[name]  # the checkpoint really pools this way
    tokens = declared.tokenizer(TEXTS[-1])["input_ids"]
    assert len(tokens) > declared.max_seq_length  # so the last text exercises truncation
    server = served(runtime, name)
    for normalize in (None, True, False):
        expected = reference(str(model_dir(name)), normalize).encode(TEXTS, convert_to_numpy=True)
        got = np.asarray(predict(server, TEXTS, **({} if normalize is None else {"normalize": normalize})))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=f"normalize={normalize}")
    if not any(isinstance(m, Normalize) for m in declared):
        assert abs(np.linalg.norm(got[0]) - 1) > 1e-3  # an unnormalised checkpoint really is served unnormalised
