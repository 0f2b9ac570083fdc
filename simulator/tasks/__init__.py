"""Tasks: the one timeline each channel (SignalR, webhooks, polling) is a view of."""
