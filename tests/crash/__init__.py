"""The crash suite (issue 6): merge-bot as real processes, killed at every named step of the gate, against a
PostgreSQL that restarts under it, a forge that fails at a fixed rate, and replicas that race for the trains.

Run it:  pytest tests/crash                    (marked slow; about five minutes on two cores)
Figures: printed at the end of the run ("merge-bot crash suite: figures"); MERGE_BOT_CRASH_REPORT=<file>
         also writes them as JSON.
"""
