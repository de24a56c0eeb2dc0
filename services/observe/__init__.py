"""What operators see: Prometheus metrics (the only prometheus_client importer), structured logs and
their redaction, the API's sampled gauges. Below every package but the kernel, so any may report here.

May import: domain, projections and the kernel.
"""
