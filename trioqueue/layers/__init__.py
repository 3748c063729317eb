"""Middleware layers, one module each (``XLayer`` configures, the service does the work)."""
