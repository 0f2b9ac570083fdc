"""Load users, shapes, thresholds and the runner: real Locust runs against a simulator on 127.0.0.1."""
