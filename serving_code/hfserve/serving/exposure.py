"""What the serving ports expose. kserve registers model-repository routes (load/unload) on the serving ports,
unauthenticated: one request could unload the model while readiness stayed true. They are off unless
--enable_repository_routes is given (docs/routes.md lists every route and why it is there).
A model version in the path is a 400 that says versions are not supported (serving/error_shapes.py).
"""

from fastapi import FastAPI
from grpc import StatusCode
from kserve.protocol.grpc.servicer import InferenceServicer

from ..errors import InvalidRequest

REPOSITORY_PREFIX = "/v2/repository"


def drop_repository_routes(app: FastAPI) -> None:
    _drop(app.router)
    app.openapi_schema = None  # rebuilt without them


def _drop(router) -> None:
    kept = []
    for route in router.routes:
        nested = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers as a branch
        if nested is not None:
            _drop(nested)
        if REPOSITORY_PREFIX + "/" not in getattr(route, "path", "") + "/":
            kept.append(route)
    router.routes[:] = kept


class CheckedServicer(InferenceServicer):
    """kserve's gRPC servicer; ModelInfer first checks what kserve indexes unguarded (an IndexError, INTERNAL)."""

    async def ModelInfer(self, request, context):  # noqa: N802 - gRPC method name
        if request.raw_input_contents and len(request.raw_input_contents) != len(request.inputs):
            raise InvalidRequest(f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} "
                                 "inputs; send one per input, or none")
        return await super().ModelInfer(request, context)


class NoRepositoryServicer(CheckedServicer):
    """The servicer with the repository RPCs answering UNIMPLEMENTED, as if they were not there."""

    async def RepositoryModelLoad(self, request, context):  # noqa: N802 - gRPC method name
        await context.abort(StatusCode.UNIMPLEMENTED, "the model repository API is disabled on this server")

    async def RepositoryModelUnload(self, request, context):  # noqa: N802
        await context.abort(StatusCode.UNIMPLEMENTED, "the model repository API is disabled on this server")
