"""Helpers shared by the project's tests, imported by name (``from tests.support.rest import Http``).

Kept out of ``conftest.py`` files and test packages' ``__init__`` modules: a conftest is for
fixtures pytest finds on its own, and importing from one ties a test to where it happens to sit.
Waiting for a condition is :mod:`contract_tests.waiting` (the contract suite polls the same way).
"""
