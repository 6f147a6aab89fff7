"""Celery workers: the ``io`` queue fetches draws, the ``cpu`` queue fits."""
