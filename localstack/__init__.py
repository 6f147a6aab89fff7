"""Runs the whole system on one machine: Redis, the draw source, workers and the API."""
