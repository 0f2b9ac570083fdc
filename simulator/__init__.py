"""conduit-harness simulator: a fake Conduit server speaking ASP.NET Core SignalR, REST and webhooks."""

__version__ = "0.1.0"
