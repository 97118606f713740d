"""Drop-folder ingest: videos dropped in ``VIDPIPE_INGEST_URL`` become videos and jobs.

The scheduler calls :func:`scan_drop_location` periodically; operators run
``vidpipe ingest scan``. See :mod:`pipeline.dropfolder.scanner` for how a file is taken.
"""

from __future__ import annotations

from pipeline.dropfolder.models import Drop, DropStatus
from pipeline.dropfolder.scanner import DropScanner, ScanReport, ingest_url
from pipeline.runtime import Runtime

__all__ = ["Drop", "DropScanner", "DropStatus", "ScanReport", "ingest_url", "scan_drop_location"]


async def scan_drop_location(runtime: Runtime) -> ScanReport:
    """One pass over the drop location the runtime's settings name.

    Raises:
        ConfigurationError: ``VIDPIPE_INGEST_URL`` names no usable folder or bucket.
    """
    return await DropScanner.from_runtime(runtime).scan_once()
