"""Developer tools (tiny local checkpoints for tests and conformance)."""
