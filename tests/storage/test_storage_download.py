"""hfserve.storage against real protocol servers: moto's S3 server and an HTTP server of .tar.gz and .zip archives.
Downloads go through KServe's storage library into the cache; refusals are one line naming the problem."""

from pathlib import Path

import pytest
from hfserve import storage


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.name != storage.COMPLETE_MARKER}


@pytest.fixture
def s3_env(s3, monkeypatch):
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)


def test_an_s3_prefix_is_downloaded_into_the_cache_once(s3, s3_env, checkpoint, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    served = storage.prepare_model_dir(s3.uri, cache)
    assert served.parent == cache and served.name.startswith("tiny-embedder-")
    assert files_of(served) == files_of(checkpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: a second download would fail
    assert storage.prepare_model_dir(s3.uri, cache) == served
    assert sorted(p.name for p in cache.iterdir()) == [served.name]


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_http_archive_is_unpacked_into_the_cache(archives, checkpoint, tmp_path, kind):
    served = storage.prepare_model_dir(f"{archives.url}/tiny-embedder.{kind}", tmp_path / "cache")
    assert files_of(served) == files_of(checkpoint)


def test_the_default_cache_is_under_hfserve_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HFSERVE_CACHE_DIR", str(tmp_path))
    assert storage.cache_root() == tmp_path / "models"
    assert storage.cache_folder("s3://a/b", storage.cache_root()) != storage.cache_folder("s3://a/c", tmp_path / "x")
    monkeypatch.delenv("HFSERVE_CACHE_DIR")
    assert storage.cache_root().name == "hfserve-models"


def test_local_paths_and_file_uris_are_served_in_place(checkpoint):
    assert storage.prepare_model_dir(checkpoint) == checkpoint
    assert storage.prepare_model_dir(f"file://{checkpoint}") == checkpoint


@pytest.mark.parametrize("uri, says", [
    ("pvc://claim/model", "cluster-only"),
    ("ftp://host/model", "unsupported storage scheme ftp://"),
    ("s3:///model", "no bucket"),
    ("s3://models/empty-prefix", "No model found"),
    ("ARCHIVES/missing.tar.gz", "not found"),
])
def test_a_location_that_cannot_be_served_is_refused_in_one_line(s3, s3_env, archives, tmp_path, uri, says):
    uri = uri.replace("ARCHIVES", archives.url)
    with pytest.raises(storage.StorageError) as refused:
        storage.prepare_model_dir(uri, tmp_path / "cache")
    message = str(refused.value)
    assert says.lower() in message.lower() and uri in message and "\n" not in message
    # nothing half-written is left for a later start to reuse
    assert not list((tmp_path / "cache").glob("*"))


def test_missing_s3_credentials_are_named_before_any_download(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "awsAnonymousCredential", "STORAGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(storage.StorageError, match="no S3 credentials: set AWS_ACCESS_KEY_ID"):
        storage.prepare_model_dir(s3.uri, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_the_async_wait_is_bounded_and_ends_when_the_model_appears(checkpoint, tmp_path):
    missing = tmp_path / "models"
    with pytest.raises(storage.StorageError, match="did not appear within 0 s"):
        storage.wait_for_model_dir(missing, 0.3, environ={"MODEL_INIT_MODE": "async"})
    storage.wait_for_model_dir(missing, 0.3, environ={})  # not async: the caller's own checks apply
    missing.symlink_to(checkpoint)  # as KServe's modelcar links the model in
    storage.wait_for_model_dir(missing, 0.3, environ={"MODEL_INIT_MODE": "async"})
