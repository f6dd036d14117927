"""Notifications outside the forge: the events a team watches for, sent to chat and mail through apprise."""
