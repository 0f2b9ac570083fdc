"""Webhook dispatcher tests (helpers: tests.support.webhooks)."""
