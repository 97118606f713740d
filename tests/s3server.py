"""A moto S3 server on 127.0.0.1 for tests, spoken to over HTTP exactly as a real S3.

The server keeps all buckets in process memory for as long as it runs, so tests that share
one server isolate themselves with a bucket each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

logger = logging.getLogger(__name__)

REGION = "us-east-1"


@dataclass
class S3Server:
    """A running moto server and where to reach it."""

    endpoint_url: str
    _server: ThreadedMotoServer = field(repr=False)

    def stop(self) -> None:
        """Shut the server down and wait for its thread to end."""
        self._server.stop()
        logger.debug("Stopped the moto S3 server at %s.", self.endpoint_url)


def start_s3_server() -> S3Server:
    """Start a moto server on a free port of 127.0.0.1 and return once it accepts requests."""
    # Port 0 lets the operating system pick a free port as the socket binds, so two test
    # runs on one machine cannot race for the same number.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_url = f"http://{host}:{port}"
    logger.debug("Started a moto S3 server at %s.", endpoint_url)
    return S3Server(endpoint_url=endpoint_url, _server=server)


def make_bucket(endpoint_url: str, name: str) -> None:
    """Create the bucket ``name``, using the credentials of the usual AWS chain."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=name)
