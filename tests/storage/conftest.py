"""The storage protocol servers (devkit/storage_servers.py), each holding the tiny text-embedding checkpoint,
started once for this package and stopped by pid after it."""

import pytest

from devkit.storage_servers import ArchiveServer, MotoS3, write_archives


@pytest.fixture(scope="session")
def checkpoint(tiny_models):
    return tiny_models("text_embedding")


@pytest.fixture(scope="session")
def s3(tmp_path_factory, checkpoint):
    server = MotoS3(tmp_path_factory.mktemp("moto-logs")).start()
    try:
        server.uri = server.upload_folder(checkpoint, "tiny-embedder")
        server.client().put_object(Bucket="models", Key="other/README.md", Body=b"not under the empty prefix")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def archives(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("www")
    write_archives(checkpoint, root, "tiny-embedder")
    server = ArchiveServer(root, tmp_path_factory.mktemp("http-logs")).start()
    try:
        yield server
    finally:
        server.stop()
