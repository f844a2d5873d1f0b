"""Audits: configuration, the scoring engine, the runner and the Python API."""
