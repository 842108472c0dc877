"""Item pipelines, in order: extract → detect → store."""
