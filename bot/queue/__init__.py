"""The queue's decisions, pure: snapshots in, next states, actions and a reason code out."""
