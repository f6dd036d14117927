"""Notifications outside the forge: the events a team watches for, sent to chat and mail through apprise.

Whoever has something to tell calls :func:`enqueue` in its own transaction with a :class:`Message` (built
by ``bot.notifications.text``) and the URLs from :func:`targets`; the background sender
(``bot.notifications.sender``) delivers it. The kinds: merged, rejected, frozen, unfrozen, stuck,
config_broken (:data:`Kind`).
"""

from bot.notifications.outbox import Kind, Message, enqueue, targets

__all__ = ["Kind", "Message", "enqueue", "targets"]
