"""A decision is followed from the HTTP request through the workflow update to the effects activity and its
SQL (issue 18, tracing), checked with OpenTelemetry's in-memory exporter.

The SDK's stable TracingInterceptor runs a workflow's updates and activities in the workflow's own trace
(started with the workflow) and links each update to the span of the request that sent it; the experimental
OpenTelemetryPlugin would make them children instead, but it needs a process-wide tracer provider."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra import tracing
from tests.driver import Regime
from tests.harness import run_stack
from tests.helpers import PLAN


async def test_one_decision_is_one_connected_trace(temporal_address, database_url):
    exporter = InMemorySpanExporter()
    tracing.setup("test", exporter=exporter)
    try:
        async with run_stack(temporal_address, database_url) as stack:
            reg = await Regime.place(stack, "RTR1")
            await stack.settle(reg.id)
            exporter.clear()
            r = await stack.http.post(f"/regimes/{reg.id}/steps/improvement_plan/decisions",
                                      headers=reg.users["trust"], json={"action": "submit", "payload": PLAN})
            assert r.status_code == 200, r.text
            await stack.settle(reg.id)
            spans = exporter.get_finished_spans()
    finally:
        tracing.shutdown()
    [request] = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST ")
                 and "decisions" in s.name]
    in_request = [s for s in spans if s.context.trace_id == request.context.trace_id]
    [update] = [s for s in in_request if s.name == "StartWorkflowUpdate:decide_step"]
    assert any(s.attributes.get("db.system") == "postgresql" for s in in_request)  # the API's own reads
    # The workflow side: the SDK's TracingInterceptor runs an update inside the workflow's own trace (the one
    # its placement started) and links it to the caller's span, so the decision is followed across by the link.
    [handled] = [s for s in spans if s.name == "HandleUpdate:decide_step"]
    assert [(ln.context.trace_id, ln.context.span_id) for ln in handled.links] == [
        (update.context.trace_id, update.context.span_id)]
    in_workflow = [s for s in spans if s.context.trace_id == handled.context.trace_id]
    [started] = [s for s in in_workflow if s.name == "StartActivity:apply_effects"]
    [ran] = [s for s in in_workflow if s.name == "RunActivity:apply_effects"]
    assert ran.parent.span_id == started.context.span_id
    sql = [s for s in in_workflow if s.parent is not None and s.parent.span_id == ran.context.span_id]
    assert any(s.name.startswith("INSERT") for s in sql), [s.name for s in sql]  # the audit entry, the task
