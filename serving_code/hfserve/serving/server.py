"""kserve's ModelServer with what a production runtime needs on top: a bind address, body-size limits,
JSON errors for every client mistake, and the OpenAI-compatible routes, all on the one HTTP app; no model-repository
routes unless asked for (serving/exposure.py); a drain on SIGTERM (serving/drain.py)."""

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

import kserve.model_server as kserve_model_server
import orjson
from fastapi import APIRouter, FastAPI
from grpc import StatusCode, aio
from grpc_interceptor.exceptions import GrpcException
from kserve import ModelServer
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.rest.server import RESTServer

from ..config import ContainerConfig, ServingConfig
from ..errors import InvalidRequest
from . import api_key
from .backpressure import Slots
from .compat import V2JsonContentType
from .controls import generation_controls, http_controls
from .drain import CloseWhenDraining, DrainingServer, DrainState
from .error_shapes import grpc_status, log
from .errors import install_error_handlers
from .exposure import CheckedServicer, NoRepositoryServicer, drop_repository_routes
from .grpc_limits import GrpcLimits, maximum_concurrent_rpcs
from .limits import BodySizeLimit
from .slow_clients import guarded_protocol
from .tls_env import refuse_tls_variables

RouterFactory = Callable[[kserve_model_server.ModelRepository], APIRouter]


class _RESTServer(RESTServer):
    def __init__(self, *args, bind_address: str, max_request_bytes: int, routers: list[APIRouter],
                 request_timing_logs: bool, drain: DrainState, repository_routes: bool, middlewares: tuple = (),
                 read_timeout_s: float = 30.0, write_timeout_s: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self._middlewares = middlewares
        self.config.host = bind_address
        self.config.http = guarded_protocol(read_timeout_s, write_timeout_s)  # serving/slow_clients.py
        self._server = DrainingServer(self.config, drain)
        self._max_request_bytes = max_request_bytes
        self._routers = routers
        self._request_timing_logs = request_timing_logs
        self._repository_routes = repository_routes

    def _register_endpoints(self, app: FastAPI):
        for router in self._routers:
            app.include_router(router)
        super()._register_endpoints(app)
        if not self._repository_routes:
            drop_repository_routes(app)

    def _add_middlewares(self, app: FastAPI):
        # kserve's timing middleware measures CPU time and logs two lines per request: in profiles it was 40% of
        # the event loop's time at 300 requests/s. It is opt-in here; the access log and /metrics remain.
        if self._request_timing_logs or self.access_log_format:
            super()._add_middlewares(app)
        app.add_middleware(V2JsonContentType)
        app.add_middleware(BodySizeLimit, max_bytes=self._max_request_bytes)
        for middleware, options in self._middlewares:  # added last: outermost (serving/controls.py)
            app.add_middleware(middleware, **options)
        app.add_middleware(CloseWhenDraining, drain=self._server.drain)  # even a refused request says close

    def _add_exception_handlers(self, app: FastAPI):
        super()._add_exception_handlers(app)
        install_error_handlers(app)


class _ExceptionToStatus(ExceptionToStatusInterceptor):
    """The same kinds as HTTP (serving/error_shapes.py), each one log line without a traceback unless internal."""

    async def handle_exception(self, ex, request_or_iterator, context, method_name):
        if isinstance(ex, GrpcException):
            await super().handle_exception(ex, request_or_iterator, context, method_name)
            return
        code, message = grpc_status(ex)
        log(ex, "gRPC", method_name, code.value[0], "internal" if code == StatusCode.INTERNAL else code.name)
        await context.abort(code, message)


class _PredictorAwareDataPlane(DataPlane):
    """Readiness endpoints also ask each model whether what it depends on (Triton) is ready.

    Requests themselves pass `disable_predictor_health_check=True` and are not gated here: they reach the model
    and fail at once with PredictorUnavailable, a 503 that names the predictor.
    """

    drain = DrainState(0.0)              # replaced by the server's; draining: the pod should leave the endpoints
    served_models: tuple[str, ...] = ()  # every model this server was started with must be there and ready

    def decode_inference_request(self, body, headers, model_name):
        """kserve's decoding of the V2 binary-tensor extension indexes, unpacks and reshapes unguarded: a
        malformed body (a wrong Inference-Header-Content-Length, truncated tensors) is a client error, not a 500."""
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        declared = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
        if declared is not None and not (declared.strip().isdigit() and int(declared) <= len(body)):
            raise InvalidRequest(f"{INFERENCE_CONTENT_LENGTH_HEADER} is {declared[:40]!r}; it must be the length "
                                 f"of the JSON header, at most the body's {len(body)} bytes")
        try:
            if declared is not None:
                _check_binary_sizes(body, int(declared))
            return super().decode_inference_request(body, headers, model_name)
        except (InvalidRequest, InvalidInput):
            raise
        except Exception as error:  # noqa: BLE001 - KeyError, TypeError, ValueError, struct.error on bad input
            raise InvalidRequest(f"malformed binary inference request: {type(error).__name__}: {error}"[:300]) \
                from None

    async def ready(self) -> bool:
        if self.drain.draining:
            return False
        models = self._model_registry.get_models()
        for name in self.served_models:
            model = models.get(name)
            if model is None or not getattr(model, "ready", True):
                return False
        for model in models.values():
            if not await _predictor_ready(model):
                return False
        return await super().ready()

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        is_ready = await super().model_ready(model_name, disable_predictor_health_check)
        if is_ready and not disable_predictor_health_check:
            return not self.drain.draining and await _predictor_ready(self._model_registry.get_model(model_name))
        return is_ready


def _check_binary_sizes(body: bytes, header_length: int) -> None:
    """The tensors after the JSON header must be exactly as long as their binary_data_size say (kserve slices
    silently: a truncated body would otherwise be read as shorter tensors)."""
    header = orjson.loads(body[:header_length])
    declared = sum(int((tensor.get("parameters") or {}).get("binary_data_size", 0)) for tensor in header["inputs"])
    if declared != len(body) - header_length:
        raise InvalidRequest(f"the binary tensors take {len(body) - header_length} bytes after the JSON header, "
                             f"but their binary_data_size add up to {declared}")


async def _predictor_ready(model) -> bool:
    check = getattr(model, "predictor_ready", None)
    return True if check is None else bool(await check())


class _GRPCServer(GRPCServer):
    """kserve's gRPC server, listening on the configured address instead of every interface, its inference calls
    under the HTTP server's concurrency slots (serving/grpc_limits.py)."""

    def __init__(self, *args, bind_address: str, repository_routes: bool, slots: Slots, **kwargs):
        super().__init__(*args, **kwargs)
        self._bind_address = bind_address
        self._slots = slots
        self._servicer_class = CheckedServicer if repository_routes else NoRepositoryServicer

    async def start(self, max_workers):
        servicer = self._servicer_class(self._data_plane, self._model_repository_extension)
        self._server = aio.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=max_workers),
            # no kserve LoggingInterceptor: a line at INFO for every call floods the log (security review M6)
            interceptors=(*self._kwargs.get("hfserve_interceptors", ()), GrpcLimits(self._slots),
                          _ExceptionToStatus()),
            maximum_concurrent_rpcs=maximum_concurrent_rpcs(self._slots),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length")),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        host = "[::]" if self._bind_address in ("0.0.0.0", "::") else self._bind_address
        self._server.add_insecure_port(f"{host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


def _log_like_kserve() -> None:
    """hfserve's own lines (one per refused request, the drain) at INFO in kserve's format, where kserve set up
    logging; without this they went to Python's last-resort handler, WARNING and above only."""
    ours, theirs = logging.getLogger("hfserve"), logging.getLogger("kserve")
    if not ours.handlers and theirs.handlers:
        for handler in theirs.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


class HFModelServer(ModelServer):
    def __init__(self, *, serving: ServingConfig = ServingConfig(), container: ContainerConfig = ContainerConfig(),
                 router_factories: tuple[RouterFactory, ...] = (), **kwargs):
        refuse_tls_variables()  # before kserve's ModelServer reads them
        super().__init__(enable_latency_logging=serving.request_timing_logs, **kwargs)
        _log_like_kserve()
        self.drain = DrainState(container.drain_delay_s)
        self.enable_repository_routes = serving.enable_repository_routes
        self.request_timing_logs = serving.request_timing_logs
        self.dataplane = _PredictorAwareDataPlane(model_registry=self.registered_models)
        self.dataplane.drain = self.drain
        self.bind_address = container.bind_address
        self.grpc_bind_address = container.grpc_bind_address or container.bind_address
        self.max_request_bytes = serving.max_request_bytes
        self.read_timeout_s = serving.request_read_timeout_s
        self.write_timeout_s = serving.response_write_timeout_s
        self.router_factories = router_factories
        self.slots = Slots(serving.max_concurrent_requests)  # HTTP and gRPC together
        self.middlewares = http_controls(self.slots, serving.max_request_bytes) + api_key.http_middlewares(serving)
        self.grpc_interceptors = api_key.grpc_interceptors(serving)  # first: a call without the key runs nothing

    def start(self, models) -> None:
        if self.workers != 1:
            # kserve's multi-process server builds its own app, without our routes, limits and bind address.
            raise ValueError("--workers must be 1; scale with replicas instead")
        self._register_and_check_atleast_one_model_is_ready(models)
        self.dataplane.served_models = tuple(model.name for model in models)
        if any(getattr(getattr(getattr(model, "settings", None), "task", None), "is_generative", False)
               for model in models):
            self.middlewares = generation_controls() + self.middlewares
        self._rest_server = _RESTServer(
            kserve_model_server.FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
            self.http_port, access_log_format=self.access_log_format, workers=1,
            grace_period=self.grace_period, event_loop=self.event_loop, timeout_keep_alive=self.timeout_keep_alive,
            bind_address=self.bind_address, max_request_bytes=self.max_request_bytes,
            request_timing_logs=self.request_timing_logs, middlewares=self.middlewares,
            read_timeout_s=self.read_timeout_s, write_timeout_s=self.write_timeout_s, routers=[factory(self.registered_models) for factory in self.router_factories],
            drain=self.drain, repository_routes=self.enable_repository_routes,
        )
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _GRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs={**vars(kserve_model_server.args),
                        "grpc_max_receive_message_length": self.max_request_bytes,
                        "hfserve_interceptors": self.grpc_interceptors},
                grace_period=self.grace_period, bind_address=self.grpc_bind_address,
                repository_routes=self.enable_repository_routes, slots=self.slots,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())

    def stop(self, sig: int):
        """After the HTTP server stopped: stop gRPC (its in-flight calls finish), only then unload the models."""
        self.drain.begin()

        async def shutdown():
            if self._grpc_server:
                await self._grpc_server.stop(sig)
            for name in list(self.registered_models.get_models()):
                self.registered_models.unload(name)

        asyncio.create_task(shutdown())
