"""End-to-end tests: real clients, real HTTP, one simulator per test (helpers: tests.support.e2e)."""
