"""OpenTelemetry propagation into the operator payload (``_tracing``, read by the operator SDK).

Only active when ``opentelemetry-api`` is installed *and* a span is current in the caller's context: then
each task gets a client span (``sandai.operator.submit``) and its W3C ``traceparent``/``tracestate`` go
into ``payload["_tracing"]``, so the operator's spans join the caller's trace. Without the package the
whole cost is one cached lookup.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

__all__ = ("end_task_span", "start_task_span")

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


def start_task_span(operator: str, version: str, task_id: str, queue: str) -> Optional[Tuple[Any, Dict[str, str]]]:
    """``(span, carrier)`` when a trace is active, else None (and no work done)."""
    trace = _trace_module()
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    from opentelemetry import propagate

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
