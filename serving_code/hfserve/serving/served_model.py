"""The one way a route finds the model a request is for, in kserve's registry of served models.

Routes that name a model (OpenAI, Cohere/Jina rerank) pass its name; the others (TEI, the Hugging Face Inference
API) get the one model this server serves. Encoder routes then call its EncoderService (core/encoder_service.py).
"""

from ..core.encoder_service import EncoderService
from ..errors import ModelNotFound, Unavailable, WrongTask


def register_aliases(registry) -> None:
    """Each model also under its --served_model_name aliases, so that kserve's V1/V2 paths, /v1/models, and every
    route here that takes a model name find it by any of them (a runtime serves one model, so no alias can be
    another model's name)."""
    for model in list(registry.get_models().values()):
        for alias in getattr(model.settings, "served_model_names", ()):
            registry.update(model, alias)


def served_model(registry, name: str | None = None, require_ready: bool = True):
    """The kserve model named `name`, or the one this server serves; ModelNotFound or Unavailable (503)."""
    if name is None:
        models = list(registry.get_models().values())
        if not models:
            raise Unavailable("no model is loaded")
        model = models[0]
    else:
        model = registry.get_model(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not served here")
    if require_ready and not model.ready:
        raise Unavailable(f"model {model.name!r} is not ready")
    return model


def encoder_service(registry, name: str | None = None) -> EncoderService:
    """The service of a served encoder model; WrongTask where the model generates text."""
    model = served_model(registry, name)
    service = getattr(model, "service", None)
    if not isinstance(service, EncoderService):
        raise WrongTask(f"model {model.name!r} serves {model.settings.task}; this route serves encoder tasks")
    return service


def generative_model(registry, name: str | None = None):
    """A served text-generation model (huggingface/generative_model.py); WrongTask where it is an encoder."""
    model = served_model(registry, name)
    if not model.settings.task.is_generative:
        raise WrongTask(f"model {model.name!r} serves {model.settings.task}, not text generation")
    return model
