"""The merge gate: one per train at a time, under a PostgreSQL advisory lock; the only place actions run."""
