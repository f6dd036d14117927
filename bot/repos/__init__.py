"""Which repositories the bot manages: the patterns of ``MERGE_BOT_REPOS``, discovery on the forge, and the
managed set every replica reads from the database."""
