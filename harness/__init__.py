"""The top package: the ``conduit-harness`` console script and the demo. The only package that
imports all the others."""
