"""Alembic environment and date-prefixed revisions (``vidpipe migrate``)."""
