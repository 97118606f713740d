"""The Litestar HTTP API (accounts, uploads, jobs, search). Built in a later step; the core
already has the pieces it will call (``pipeline.submit``, ``pipeline.reports``, ``pipeline.search``)."""
