"""The Litestar HTTP API. So far: the application factory and health checks; accounts,
uploads, jobs and search routes build on the same factory."""
