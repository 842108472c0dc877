"""One spider per kind of source, on a shared base."""
