"""vidpipe's core: settings, database, storage, media, subtitles, search, stages and job states.

Nothing in this package imports ``api`` or ``workers``; the ``vidpipe`` command in
``pipeline.cli`` is the one place that wires the three together.
"""

__version__ = "0.1.0"
