"""The HTTP side: webhook ingest, health, (later) the queue page, JSON API and metrics."""
