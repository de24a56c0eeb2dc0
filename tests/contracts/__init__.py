"""Contract tests: one class per promise-keeping interface, subclassed once per implementation."""

import pytest

# These modules are not test modules, so pytest would not rewrite their asserts by itself.
pytest.register_assert_rewrite("tests.contracts.event_store")
