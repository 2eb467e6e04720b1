"""gRPC's share of the limits (security review M1): inference calls take the same slots as HTTP POSTs
(serving/backpressure.py: RESOURCE_EXHAUSTED with a message beyond them), and a call the client cancels, or whose
deadline passes, cancels its request scope (serving/cancellation.py) so that a generation stops.

Health, readiness and metadata calls are not counted, as HTTP GETs are not; grpc's own
`maximum_concurrent_rpcs` (RPC_HEADROOM above the slots) caps every call together.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio
from grpc_interceptor.server import AsyncServerInterceptor

from . import cancellation
from .backpressure import Slots

INFERENCE_METHODS = ("/inference.GRPCInferenceService/ModelInfer",)
# Calls beyond the slots that grpc itself still accepts (probes and metadata while every slot is taken).
RPC_HEADROOM = 64


class GrpcLimits(AsyncServerInterceptor):
    def __init__(self, slots: Slots):
        self.slots = slots

    async def intercept(self, method, request_or_iterator, context: aio.ServicerContext, method_name: str):
        if method_name not in INFERENCE_METHODS:
            return await method(request_or_iterator, context)
        if not self.slots.take():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.slots.refusal())
        scope = cancellation.RequestScope()
        token = cancellation.enter(scope)
        try:
            return await method(request_or_iterator, context)
        except asyncio.CancelledError:  # grpc cancels the handler when its client cancels or its deadline passes
            scope.cancelled.set()
            raise
        finally:
            cancellation.leave(token)
            self.slots.release()


def maximum_concurrent_rpcs(slots: Slots) -> int:
    return slots.limit + RPC_HEADROOM
