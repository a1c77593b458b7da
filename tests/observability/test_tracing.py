from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway.observability import MASK, RedactingSpanExporter, configure_tracing
from tests.observability.conftest import Collector


def test_exported_spans_have_secrets_masked(canary: str) -> None:
    """Names, attributes, events, links and status descriptions are redacted on export."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exported)))
    tracer = provider.get_tracer("test")
    linked = trace.Link(
        SpanContext(1, 2, is_remote=True), {"note": f"Bearer {canary}", "code": canary}
    )

    with tracer.start_as_current_span(f"POST /token?code={canary}", links=[linked]) as span:
        span.set_attribute("http.request.header.authorization", [f"Bearer {canary}"])
        span.set_attribute("client_secret", canary)
        span.set_attribute("url.full", f"https://idp.example/token?refresh_token={canary}")
        span.set_attribute("http.response.status_code", 400)
        span.add_event("token.rejected", {"body": f'{{"id_token": "{canary}"}}'})
        span.set_status(trace.Status(trace.StatusCode.ERROR, f"invalid lgk_{canary}"))
    provider.shutdown()

    [finished] = exported.get_finished_spans()
    assert canary not in finished.to_json()
    assert (finished.attributes or {})["client_secret"] == MASK
    assert (finished.attributes or {})["http.response.status_code"] == 400
    assert finished.status.description == f"invalid {MASK}"


def test_a_secret_in_one_event_alone_is_still_masked(canary: str) -> None:
    """A span whose only secret is in an event's attributes is copied with it masked."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exported)))
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("GET /records") as span:
        span.set_attribute("http.route", "/records")
        span.add_event("upstream.answered", {"body": f"Bearer {canary}"})
    provider.shutdown()

    [finished] = exported.get_finished_spans()
    assert canary not in finished.to_json()
    assert (finished.name, dict(finished.attributes or {})) == (
        "GET /records",
        {"http.route": "/records"},
    )


def test_spans_are_recorded_even_when_the_caller_did_not_sample() -> None:
    """The audit summary needs every request's spans, whatever the incoming sampled flag."""
    provider = configure_tracing(service_name="linkgate-test", otlp_endpoint=None).provider
    unsampled = NonRecordingSpan(
        SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
    )

    span = provider.get_tracer("test").start_span(
        "GET /records", context=trace.set_span_in_context(unsampled)
    )

    assert span.is_recording()
    span.end()
    provider.shutdown()


def test_spans_are_exported_over_otlp_http_redacted(collector: Collector, canary: str) -> None:
    """With an endpoint, spans reach the collector at /v1/traces with secrets masked."""
    provider = configure_tracing(service_name="linkgate-test", otlp_endpoint=collector.url).provider

    with provider.get_tracer("test").start_as_current_span("upstream.fetch") as span:
        span.set_attribute("url.full", f"https://api.example/me?access_token={canary}")
    provider.shutdown()

    [(path, body)] = collector.received
    assert path == "/v1/traces"
    assert b"upstream.fetch" in body
    assert b"linkgate-test" in body
    assert canary.encode() not in body


def test_a_secret_is_masked_after_clean_spans_with_the_same_keys(canary: str) -> None:
    """Clean attribute items are remembered by value: a new value under a known key is checked."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exported)))
    tracer = provider.get_tracer("test")

    for url in ("https://api.example/me", f"https://api.example/me?access_token={canary}"):
        with tracer.start_as_current_span("GET") as span:
            span.set_attributes({"http.request.method": "GET", "url.full": url})
    provider.shutdown()

    clean, secret = exported.get_finished_spans()
    assert clean.attributes == {"http.request.method": "GET", "url.full": "https://api.example/me"}
    assert secret.attributes == {
        "http.request.method": "GET",
        "url.full": f"https://api.example/me?access_token={MASK}",
    }


def test_the_process_resource_is_hashed_like_the_sdks() -> None:
    """The resource's hash is worked out once, and equals what the SDK's Resource gives."""
    provider = configure_tracing(service_name="linkgate-test", otlp_endpoint=None).provider
    resource = provider.resource

    assert hash(resource) == hash(Resource(resource.attributes, resource.schema_url))
    assert resource == Resource(resource.attributes, resource.schema_url)
    assert resource.attributes["service.name"] == "linkgate-test"
    provider.shutdown()
