"""A repository's own configuration: ``.gitea/merge-bot.toml`` read from the tip of each target branch.

:mod:`bot.repoconfig.file` parses and validates such a file (pure); :mod:`bot.repoconfig.cache` reads it from
the bot's git mirror, per (repository, tip), and says which settings a branch is worked with.
"""
