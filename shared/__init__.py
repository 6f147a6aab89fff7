"""Code shared by the API and the workers: estimators, settings, the job store, schemas."""
