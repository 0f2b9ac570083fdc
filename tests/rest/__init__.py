"""REST API tests (helpers: tests.support.rest)."""
