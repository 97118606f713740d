"""Fixtures for an OpenSearch-compatible server (osmem-server), or a real OpenSearch by URL."""
