"""Fixtures shared by the audit integration tests."""

from tests.integration.services.audit.test_export import trail  # noqa: F401  (usage and lifecycle around a key)
