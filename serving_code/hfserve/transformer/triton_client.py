"""Triton gRPC client for the transformer: binary INT64 tensors in, named float outputs back, fast failure.

A plain gRPC client in front of a dead Triton either hangs until its deadline or, once Triton is back, waits out
its reconnect backoff (seconds). Here:
- the channel's reconnect backoff is short (100 ms first, 500 ms at most), so a restarted Triton is reconnected
  to within half a second;
- a background prober asks Triton every 200 ms whether the model is ready. While it is not (Triton down, killed,
  still loading, draining), `ready` is False and every request fails AT ONCE with `TritonUnavailable`
  (HTTP 503 through the shared error handlers) instead of waiting for a deadline;
- a request that fails because Triton went away marks the predictor unavailable immediately, without waiting for
  the next probe.

Messages are encoded by hand (`wire`: see there why neither tritonclient's nor kserve's generated stubs).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import numpy as np

from ..serving import tracing
from ..serving.errors import PredictorUnavailable
from . import wire

log = logging.getLogger("hfserve.transformer")

MAX_MESSAGE_BYTES = 2**31 - 1
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after Triton restarts (gRPC's defaults back off from 1 s up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    # Notice a silently dead peer (no RST, e.g. a frozen node) through keepalive pings.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
# gRPC codes meaning "Triton (or the model in it) is not there right now".
UNAVAILABLE_CODES = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.DEADLINE_EXCEEDED",
                     "StatusCode.NOT_FOUND", "StatusCode.ABORTED"}
# "is not healthy": a Python-backend stub died; the launcher restarts the container (triton/__main__.py).
UNAVAILABLE_MARKERS = ("unknown model", "no available versions", "is not ready", "not ready", "unloading",
                       "failed to connect", "connection refused", "socket closed", "connection reset",
                       "is not healthy")


class TritonUnavailable(PredictorUnavailable):
    """Triton cannot take requests for the model now; maps to HTTP 503 with a JSON error."""


class TritonRequestError(RuntimeError):
    """Triton answered, but refused the request (a bug on our side: inputs are checked before they are sent)."""


def _status(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return str(exc.code())
    return ""


def _message(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "details"):
        text = exc.details() or str(exc.code())
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


def is_unavailability(exc: Exception) -> bool:
    if isinstance(exc, (asyncio.TimeoutError, ConnectionError)):
        return True
    if _status(exc) in UNAVAILABLE_CODES:
        return True
    text = _message(exc).lower()
    return any(marker in text for marker in UNAVAILABLE_MARKERS)


class TritonClient:
    def __init__(self, target: str, model_name: str, timeout_s: float = 30.0, probe_interval_s: float = 0.2,
                 probe_timeout_s: float = 1.0):
        self.target = target
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        self.probe_timeout_s = probe_timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._rpc: dict = {}
        self._closing: set[asyncio.Task] = set()
        self._prober: asyncio.Task | None = None
        self._ready = False
        self._reason = "not checked yet"
        self._slow_probes = 0
        self._connection_failed = False
        # From Triton's model configuration, fetched once the model is first ready.
        self.input_names: tuple[str, ...] | None = None
        self.output_names: tuple[str, ...] | None = None
        self.max_batch_size = 0
        self.ready_changed_at = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._prober is not None and not self._prober.done()

    async def start(self) -> None:
        """Open the channel and start probing (call from the serving event loop)."""
        if self.started:
            return
        self._open_channel()
        await self.probe()
        self._prober = asyncio.get_running_loop().create_task(self._probe_forever(), name="triton-prober")

    def _open_channel(self) -> None:
        old = self._channel
        self._channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_ARGS)

        def rpc(method, serializer, deserializer):
            return self._channel.unary_unary(wire.SERVICE + method, request_serializer=serializer,
                                             response_deserializer=deserializer)

        self._rpc = {
            "ready": rpc("ModelReady", wire.encode_name_request, wire.decode_ready_response),
            "config": rpc("ModelConfig", wire.encode_name_request, wire.decode_model_config_response),
            "infer": rpc("ModelInfer", None, wire.decode_infer_response),
        }
        self._connection_failed = False
        if old is not None:  # let whatever still runs on it finish, then close it
            task = asyncio.get_running_loop().create_task(old.close(grace=self.timeout_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            try:
                await self._prober
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._prober = None
        if self._channel is not None:
            await self._channel.close()
            self._channel, self._rpc = None, {}
        for task in list(self._closing):
            task.cancel()
        self._set_ready(False, "client closed")

    # -- readiness ------------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def reason(self) -> str:
        return self._reason

    def _set_ready(self, ready: bool, reason: str = "") -> None:
        if ready != self._ready:
            self.ready_changed_at = time.monotonic()
            if ready:
                log.info("predictor %s (triton model %s) is ready", self.target, self.model_name)
            else:
                log.warning("predictor %s (triton model %s) is unavailable: %s", self.target, self.model_name, reason)
        self._ready = ready
        if not ready:
            self._reason = reason

    def unavailable(self, reason: str | None = None) -> TritonUnavailable:
        return TritonUnavailable(
            f"predictor {self.target} (triton model {self.model_name}) is unavailable: {reason or self._reason}")

    async def probe(self) -> bool:
        try:
            ready = await self._rpc["ready"](self.model_name, timeout=self.probe_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "not available"
            if _status(exc) == "StatusCode.DEADLINE_EXCEEDED" and self._ready:
                # A busy 2-core node can answer slowly under load: three slow probes in a row before giving up.
                self._slow_probes += 1
                if self._slow_probes < 3:
                    return self._ready
            # Connection refused/reset: the next probe opens a fresh channel, which connects at once instead of
            # waiting out the old channel's reconnect backoff (up to 0.6 s even when tuned).
            self._connection_failed = _status(exc) == "StatusCode.UNAVAILABLE"
            self._set_ready(False, _message(exc))
            return False
        self._slow_probes = 0
        if not ready:
            self._set_ready(False, "model not ready")
            return False
        if self.input_names is None or not self._ready:  # (re)read: Triton may have restarted with a new config
            try:
                await self._read_config()
            except Exception as exc:  # noqa: BLE001
                self._set_ready(False, f"cannot read the model configuration: {_message(exc)}")
                return False
        self._set_ready(True)
        return True

    async def _read_config(self) -> None:
        config = await self._rpc["config"](self.model_name, timeout=self.probe_timeout_s)
        self.max_batch_size = config["max_batch_size"]
        self.output_names = tuple(config["outputs"])
        self.input_names = tuple(config["inputs"])
        log.info("triton model %s: inputs %s, outputs %s, max_batch_size %d", self.model_name,
                 list(self.input_names), list(self.output_names), self.max_batch_size)

    async def _probe_forever(self) -> None:
        while True:
            # Every 200 ms; twice as often while Triton is unavailable, so that recovery is noticed quickly.
            await asyncio.sleep(self.probe_interval_s if self._ready else self.probe_interval_s / 2)
            try:
                if self._connection_failed:
                    self._open_channel()
                await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the prober must never die
                log.exception("readiness probe failed unexpectedly: %s", exc)

    # -- inference ------------------------------------------------------------------------------------------------
    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Padded int64 [B, T] inputs -> Triton's named outputs [B, ...]; batches above max_batch_size are split."""
        if not self._ready or not self._rpc:
            raise self.unavailable()
        names = [n for n in self.input_names if n in inputs]
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise TritonRequestError(f"inputs {missing} required by triton model {self.model_name} were not produced")
        rows = int(inputs[names[0]].shape[0])
        step = self.max_batch_size if self.max_batch_size > 0 else rows
        chunks = [{n: inputs[n][start:start + step] for n in names} for start in range(0, rows, step)]
        results = await asyncio.gather(*(self._infer_one(chunk) for chunk in chunks), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if len(results) == 1:
            return results[0]
        return {name: np.concatenate([r[name] for r in results], axis=0) for name in self.output_names}

    async def _infer_one(self, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request = wire.encode_infer_request(self.model_name, chunk, self.output_names)
        try:
            outputs = await self._rpc["infer"](request, timeout=self.timeout_s, metadata=tracing.inject())
        except Exception as exc:  # noqa: BLE001
            if is_unavailability(exc):
                reason = _message(exc)
                if _status(exc) != "StatusCode.DEADLINE_EXCEEDED":
                    self._set_ready(False, reason)
                raise self.unavailable(reason) from None
            raise TritonRequestError(f"triton model {self.model_name} refused the request: {_message(exc)}") from None
        return {name: outputs[name] for name in self.output_names}

