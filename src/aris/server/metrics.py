"""Prometheus metrics in their own registry (several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "aris_requests_total", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.tokens = Counter("aris_tokens_total", "Tokens processed", ["kind"], registry=self.registry)
        self.latency = Histogram(
            "aris_request_latency_seconds", "Request latency", ["route"], registry=self.registry
        )
        self.ttft = Histogram(
            "aris_time_to_first_token_seconds", "Time to first token", registry=self.registry
        )
        self.queue_depth = Gauge(
            "aris_queue_depth", "Generations waiting for the engine", registry=self.registry
        )
        self.in_flight = Gauge("aris_generations_in_flight", "Generations running", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
