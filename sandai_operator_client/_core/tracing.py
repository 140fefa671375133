"""OpenTelemetry propagation into the operator payload (``_tracing``, read by the operator SDK).

Only active when ``opentelemetry-api`` is installed *and* a span is current in the caller's context: then
each task gets a client span (``sandai.operator.submit``) and its W3C ``traceparent``/``tracestate`` go
into ``payload["_tracing"]``, so the operator's spans join the caller's trace. Without the package the
whole cost is one cached lookup.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

__all__ = ("end_task_span", "start_task_span")

_AVAILABLE: Optional[bool] = None


def _available() -> bool:
    global _AVAILABLE
    if _AVAILABLE is None:
        import importlib.util

        try:
            _AVAILABLE = importlib.util.find_spec("opentelemetry.trace") is not None
        except (ImportError, ValueError):
            _AVAILABLE = False
    return _AVAILABLE


def start_task_span(operator: str, version: str, task_id: str, queue: str) -> Optional[Tuple[Any, Dict[str, str]]]:
    """``(span, carrier)`` when a trace is active, else None (and no work done)."""
    if not _available():
        return None
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    tracer = trace.get_tracer("sandai_operator_client")
    span = tracer.start_span(
        "sandai.operator.submit",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "celery",
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
