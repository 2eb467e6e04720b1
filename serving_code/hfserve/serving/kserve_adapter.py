"""kserve's Model over the encoder service: the V1 and V2 (REST and gRPC) requests kserve's DataPlane hands to
`preprocess -> predict -> postprocess`. Every other protocol calls the service directly."""

from dataclasses import dataclass, field

from kserve import InferRequest, InferResponse, Model

from ..core.encoder_service import Encoded, EncoderService
from ..errors import InvalidRequest
from ..tasks import Task
from .requests import TEXT_INPUT, ParsedRequest, parse_request
from .v2_tensors import embedding_outputs, to_infer_output


@dataclass
class Job:
    """One V1/V2 request on its way through preprocess -> predict -> postprocess."""

    request: ParsedRequest
    encoded: Encoded
    results: list = field(default_factory=list)


class KServeEncoderModel(Model):
    def __init__(self, service: EncoderService):
        super().__init__(service.name)
        self.service = service

    @property
    def settings(self):
        return self.service.settings

    def load(self) -> bool:
        # kserve calls load() again on every request while healthy() is False (Triton down): keep it cheap.
        if not self.service.loaded:
            self.service.load()
        self.ready = True
        return self.ready

    async def healthy(self) -> bool:
        """Whether the model is loaded. kserve asks this before every request, which must then reach the backend
        and fail there with Unavailable (a 503 naming the predictor) while Triton is down; asking the service also
        connects its backend. The readiness endpoints add `predictor_ready()` (see serving/server.py)."""
        await self.service.ready()
        return bool(self.ready)

    async def predictor_ready(self) -> bool:
        """Whether the backend can run a forward pass now (Triton has the model ready)."""
        return bool(self.ready) and await self.service.ready()

    def validate(self, payload):
        return payload

    async def preprocess(self, payload: dict | InferRequest, headers: dict | None = None) -> Job:
        request = parse_request(payload, self.service.max_items)
        if request.params.embedding_types is not None:
            if not request.is_v2:
                raise InvalidRequest("'embedding_types' is a V2 parameter (typed tensors); V1 answers float lists")
            if self.service.task != Task.TEXT_EMBEDDING:
                raise InvalidRequest(f"'embedding_types' applies to text_embedding models; this model serves "
                                     f"{self.service.task}")
        return Job(request=request, encoded=await self.service.encode(request.texts, request.params))

    async def predict(self, job: Job, headers: dict | None = None) -> Job:
        forward = await self.service.run(job.encoded)
        job.results = await self.service.results(job.encoded, forward.rows)
        return job

    async def postprocess(self, job: Job, headers: dict | None = None) -> dict | InferResponse:
        if not job.request.is_v2:
            return {"predictions": job.results}
        types = job.request.params.embedding_types
        tensors = (embedding_outputs(job.results, types) if types is not None
                   else self.service.handler.v2_outputs(job.results, job.request.params))
        return InferResponse(
            model_name=self.name,
            response_id=job.request.response_id,
            use_binary_outputs=job.request.binary_outputs,
            infer_outputs=[to_infer_output(t) for t in tensors],
        )

    def get_input_types(self) -> list[dict]:
        return [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return self.service.handler.output_metadata() if self.service.handler else []

    def stop(self) -> None:
        self.service.stop()
        self.ready = False
