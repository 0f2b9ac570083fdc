"""Locust entry point for load against a Conduit (or the simulator): polling, SignalR and auto users.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:5000 --conduit-key vk_...
    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 60s --host ... SignalRUser
    CONDUIT_LOAD_SHAPE=reconnect-storm locust -f loadtests/locustfile.py --headless -u 20 -r 10 -t 30s ...

Without class names Locust runs every user below (weights 3:1:1). ``conduit-harness load`` runs
this file for you, starting a simulator when no ``--host`` is given. The webhook sender plays the
server against *your* receiver, so it lives in ``webhook_locustfile.py``.
"""

from loadtests import metrics  # noqa: F401  (registers the raw-sample listeners and --conduit-* options)
from loadtests.shapes import selected_shape
from loadtests.users import AutoUser, PollingUser, SignalRUser

__all__ = ["AutoUser", "PollingUser", "SignalRUser"]

# Locust uses the first shape class it finds here, so only the chosen one is exposed.
_shape = selected_shape()
if _shape is not None:
    LoadShape = _shape
