"""The ``vidpipe`` command: the one place that wires the core, the workers and the API."""
