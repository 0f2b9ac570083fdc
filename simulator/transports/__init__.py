"""aiohttp transports for SignalR: they move bytes between sockets and hub connections, nothing more."""
