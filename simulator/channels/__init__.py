"""Projections of the task timeline onto the channels clients follow: SignalR and webhooks.

(Polling is the third view: the REST routes read the task's state directly.)
"""
