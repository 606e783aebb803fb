"""What both services serve over HTTP: Prometheus metrics and health probes (no service logic here)."""

from consumer.observability.http_server import Probe, ProbeServer

__all__ = ["Probe", "ProbeServer"]
