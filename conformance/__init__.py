"""Conformance suite for deployed kserve-huggingface runtimes (`make conformance`)."""
