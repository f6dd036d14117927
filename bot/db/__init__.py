"""The database: typed models, sessions, migrations and the queries the rest of the bot uses."""
