"""Bundled reference clients of the contract suite (docs/reference-clients.md).

- :mod:`contract_tests.clients.hub_client`: an asyncio SignalR hub client on aiohttp and the
  simulator's sans-I/O protocol core, with ``withAutomaticReconnect`` semantics.
- :mod:`contract_tests.clients.python_client`: the Python reference client, driven over the driver
  protocol (``python -m contract_tests.clients.python_client [--mutant NAME]``).
- ``node_client.mjs``: the Node reference client on @microsoft/signalr (run from where
  :mod:`contract_tests.node` has its npm packages; ``node {node_client}`` in a client profile).
"""
