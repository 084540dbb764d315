"""Operations: Prometheus metrics, OpenTelemetry tracing, and what they instrument."""
