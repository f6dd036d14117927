"""Periodic work: the reconciler, the reaper and pruning, on APScheduler 3.x."""
