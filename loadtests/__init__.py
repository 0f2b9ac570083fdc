"""Locust users and shapes for polling, SignalR and webhook traffic."""
