"""Null clients: driver-protocol clients that do only part of the job (or nothing), for proving
that the contract suite cannot be passed by default."""
