"""gitea_sim: a Gitea 1.25 simulator (REST API, git smart HTTP, webhooks, CI, faults) for merge-bot's tests."""

from .app import create_app

__all__ = ["create_app"]
