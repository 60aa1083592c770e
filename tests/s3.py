"""An S3 endpoint for tests: moto's standalone server on a free localhost port, with a bucket.

Real S3 semantics over HTTP (ETags, conditional puts, listing), so DVC, MLflow and the audit
log talk to it exactly as to S3; nothing is mocked inside the process under test. Use the
`s3` fixture (one server per test session) and `S3Endpoint.env` for the variables a client
needs; each test takes its own key prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from attestflow.stack.services import start_moto, stop_group, wait_moto


@dataclass(frozen=True)
class S3Endpoint:
    """A running S3-compatible endpoint, its test credentials and a bucket on it."""

    url: str
    bucket: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    @property
    def env(self) -> dict[str, str]:
        """What boto3, s3fs (DVC) and MLflow read to reach the endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.url,
            "MLFLOW_S3_ENDPOINT_URL": self.url,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def prefix(self) -> str:
        """A fresh key prefix, so that tests sharing the server do not see each other's objects."""
        return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """moto's S3 server for the whole session, with the bucket ``attestflow-test``."""
    server = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    endpoint = S3Endpoint(url=server.url(), bucket="attestflow-test")
    try:
        wait_moto(server, timeout_s=60)
        endpoint.client().create_bucket(Bucket=endpoint.bucket)
        yield endpoint
    finally:
        stop_group(server)
