"""Locust entry point for webhook load: WebhookSenderUser plays Conduit against your receiver.

    locust -f loadtests/webhook_locustfile.py --headless -u 10 -r 5 -t 30s \\
        --host http://127.0.0.1:8080/webhooks/conduit --conduit-webhook-secret whsec_...

The host is the receiver's full URL. Each delivery is signed like Conduit's (X-Conduit-Signature,
hex HMAC-SHA256 of the exact body); any non-2xx answer counts as a failure.
"""

from loadtests import metrics  # noqa: F401  (registers the raw-sample listeners and --conduit-* options)
from loadtests.shapes import selected_shape
from loadtests.users import WebhookSenderUser

__all__ = ["WebhookSenderUser"]

_shape = selected_shape()
if _shape is not None:
    LoadShape = _shape
