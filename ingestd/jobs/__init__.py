"""A job from start to end: the manifest and its store, the per-item outcomes, the in-memory
index, the per-source lock and the pipeline that runs one job."""
