"""Locust load tests for the kserve-huggingface runtimes (`make load`)."""
