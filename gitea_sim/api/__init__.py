"""Gitea REST API handlers, one module per area."""
