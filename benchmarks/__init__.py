"""Performance benchmarks of conduit-harness (not collected by the default ``pytest`` run).

See ``benchmarks/README.md``.
"""
