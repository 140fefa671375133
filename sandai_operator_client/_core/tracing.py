"""OpenTelemetry spans, and their context carried into the operator payload (``_tracing``, read by the SDK).

Active when ``opentelemetry-api`` is installed and either a span is current in the caller's context or
``SANDAI_OPERATOR_TRACING_ENABLED`` is ``true``/``1`` (upstream 0.6.x's switch; then calls are traced
even without a current span, as roots). A ``sync()`` or ``get()`` is one CLIENT span
(``sandai.operator.sync`` / ``sandai.operator.get``) covering the whole call, wait included, with the
OpenTelemetry messaging attributes (system, destination, operation, message id) and an ERROR status and
exception event when it fails; each task's publish is a PRODUCER span (``sandai.operator.submit``)
inside it, whose W3C ``traceparent``/``tracestate`` go into ``payload["_tracing"]`` so the operator's
spans join the trace. With the switch on and no tracer provider configured, :func:`configure_from_environment`
installs an OTLP exporter to ``SANDAI_OPERATOR_OTLP_ENDPOINT`` (else ``OTEL_EXPORTER_OTLP_ENDPOINT``)
when ``opentelemetry-sdk`` and the OTLP exporter are installed. Without the package the whole cost is
one cached lookup per call.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

__all__ = ("configure_from_environment", "end_task_span", "start_call_span", "start_task_span", "use_call_span")

_UNKNOWN: Any = object()
_trace: Any = _UNKNOWN  # the opentelemetry.trace module once looked up; None when not installed


def _trace_module() -> Any:
    global _trace
    if _trace is _UNKNOWN:
        import importlib.util

        try:
            found = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):
            found = False
        if found:
            from opentelemetry import trace

            _trace = trace
        else:
            _trace = None
    return _trace


def tracing_enabled() -> bool:
    """``SANDAI_OPERATOR_TRACING_ENABLED`` is ``true`` or ``1`` (read at the first call)."""
    global _enabled
    if _enabled is None:
        _enabled = os.environ.get("SANDAI_OPERATOR_TRACING_ENABLED", "").strip().lower() in ("true", "1")
    return _enabled


_enabled: Optional[bool] = None


def _active(trace: Any) -> bool:
    return tracing_enabled() or trace.get_current_span().get_span_context().is_valid


def start_call_span(operation: str, operator: str, version: str) -> Any:
    """A CLIENT span for a whole call (``operation``: sync, get) when tracing is active, else None; the
    caller sets the destination and message id once it knows them."""
    trace = _trace_module()
    if trace is None or not _active(trace):
        return None
    attributes = {
        "messaging.system": "celery",
        "messaging.operation.name": operation,
        "messaging.operation.type": "send" if operation == "sync" else "receive",
        "sandai.operator.name": operator,
        "sandai.operator.version": version,
    }
    tracer = trace.get_tracer("sandai_operator_client")
    return tracer.start_span(f"sandai.operator.{operation}", kind=trace.SpanKind.CLIENT, attributes=attributes)


def use_call_span(span: Any) -> Any:
    """A context manager making ``span`` current; it records an exception and ERROR status, and ends it."""
    trace = _trace_module()
    return trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True)


def configure_from_environment(service_name: str) -> None:
    """With ``SANDAI_OPERATOR_TRACING_ENABLED`` on and no tracer provider set, export spans over OTLP to
    ``SANDAI_OPERATOR_OTLP_ENDPOINT`` (else ``OTEL_EXPORTER_OTLP_ENDPOINT``, else the exporter's default);
    a missing package is logged, not raised: the client works without traces."""
    if not tracing_enabled():
        return
    from .._log import logger

    trace = _trace_module()

    if trace is None:
        logger.warning("SANDAI_OPERATOR_TRACING_ENABLED is set but opentelemetry-api is not installed: no spans")
        return
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # the application configured its own provider
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        logger.warning(
            "SANDAI_OPERATOR_TRACING_ENABLED is set but %s is missing: spans go to no exporter "
            "(install opentelemetry-sdk and opentelemetry-exporter-otlp-proto-grpc, or set a provider)",
            exc.name,
        )
        return
    endpoint = os.environ.get("SANDAI_OPERATOR_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    provider = TracerProvider(resource=Resource({"service.name": service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter())
    )
    trace.set_tracer_provider(provider)


def start_task_span(operator: str, version: str, task_id: str, queue: str) -> Optional[Tuple[Any, Dict[str, str]]]:
    """``(span, carrier)`` when tracing is active, else None (and no work done)."""
    trace = _trace_module()
    if trace is None or not _active(trace):
        return None
    from opentelemetry import propagate

    tracer = trace.get_tracer("sandai_operator_client")
    span = tracer.start_span(
        "sandai.operator.submit",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "celery",
            "messaging.operation.type": "publish",
            "messaging.destination.name": queue,
            "messaging.message.id": task_id,
            "sandai.operator.name": operator,
            "sandai.operator.version": version,
        },
    )
    carrier: Dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier


def end_task_span(span: Any, error: Optional[BaseException]) -> None:
    """End a span from :func:`start_task_span`, marking it failed when publishing failed."""
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    span.end()
