"""Real servers of the storage protocols, on loopback: moto's standalone S3 server and an HTTP file server holding a
checkpoint as .tar.gz and .zip. Each runs as its own process, stopped by pid (devkit.processes.ServerProcess)."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

from devkit.ports import release, reserve_ports
from devkit.processes import ServerProcess

BUCKET = "models"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoS3:
    """moto's standalone server (`moto.server`): the S3 REST API over HTTP, as AWS_ENDPOINT_URL points clients."""

    def __init__(self, logs: Path):
        (self.port,) = reserve_ports(1)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = ServerProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     logs / f"moto-{self.port}.log")

    @property
    def env(self) -> dict[str, str]:
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> "MotoS3":
        self.process.start()
        self.process.wait_http(f"{self.endpoint}/moto-api/", timeout=60)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def upload_folder(self, folder: Path, prefix: str) -> str:
        client = self.client()
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")
        return f"s3://{BUCKET}/{prefix}"

    def stop(self) -> None:
        self.process.stop()
        release(self.port)


def write_archives(folder: Path, out_dir: Path, stem: str) -> dict[str, Path]:
    """`<stem>.tar.gz` and `<stem>.zip` holding folder's files at the archive root (what KServe unpacks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    tar_path, zip_path = out_dir / f"{stem}.tar.gz", out_dir / f"{stem}.zip"
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(folder).as_posix())
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(folder).as_posix())
    return {"tar.gz": tar_path, "zip": zip_path}


class ArchiveServer:
    """Python's http.server over a folder: Content-Type application/gzip for .tar.gz, application/zip for .zip."""

    def __init__(self, root: Path, logs: Path):
        self.root = Path(root)
        (self.port,) = reserve_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = ServerProcess([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                      "--directory", str(self.root), str(self.port)], logs / f"http-{self.port}.log")

    def start(self) -> "ArchiveServer":
        self.process.start()
        self.process.wait_http(f"{self.url}/", timeout=30)
        return self

    def stop(self) -> None:
        self.process.stop()
        release(self.port)
