"""merge-bot: a merge queue for Gitea and Forgejo."""

__version__ = "0.1.0"
