"""Observability: logs with the secret mask, Prometheus metrics, OpenTelemetry traces."""
