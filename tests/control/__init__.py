"""Tests of the control API (/_sim/)."""
