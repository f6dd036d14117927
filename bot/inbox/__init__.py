"""Stored webhook deliveries → facts (PR state, statuses) and commands (entries), then a wake-up of the gate."""
