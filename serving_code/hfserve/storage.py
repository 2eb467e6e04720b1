"""`--model_dir` as a storage URI, fetched with KServe's own storage library (kserve-storage, what KServe's storage
initializer runs), and the wait for a model directory that another container fills (MODEL_INIT_MODE=async).

A URI (s3://, gs://, https://<account>.blob.core.windows.net/..., an https:// .tar.gz or .zip, hf://) is downloaded
once into `<cache>/<name>-<hash of the URI>` (cache: --model_cache_dir, else $HFSERVE_CACHE_DIR/models, else the temp
folder), never into the read-only model mount. The download lands in a staging folder renamed into place when it is
complete, so a killed start-up never leaves a half model that a later start would reuse. Credentials come from the
environment variables KServe's storage reads (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
awsAnonymousCredential, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCESS_KEY or AZURE_CLIENT_ID/..., HF_TOKEN,
HF_ENDPOINT, STORAGE_CONFIG). Every failure is a StorageError whose message is one line naming the problem; the
entry points print it and exit non-zero.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .startup_log import startup_logger

log = startup_logger()

COMPLETE_MARKER = ".hfserve-download-complete"
# What KServe's storage library downloads (kserve_storage.Storage.download); hdfs/webhdfs and modelscope:// too, but
# this project tests the ones listed first.
SUPPORTED_SCHEMES = ("s3", "gs", "https", "http", "hf", "hdfs", "webhdfs", "modelscope", "oci")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class StorageError(Exception):
    """A model location that cannot be served; str() is the one line the entry point prints."""


def is_uri(location) -> bool:
    return isinstance(location, str) and _SCHEME_RE.match(location) is not None


def cache_root(configured: Path | None = None) -> Path:
    if configured is not None:
        return Path(configured)
    if os.environ.get("HFSERVE_CACHE_DIR"):
        return Path(os.environ["HFSERVE_CACHE_DIR"]) / "models"
    return Path(tempfile.gettempdir()) / "hfserve-models"


def cache_folder(uri: str, root: Path) -> Path:
    """`<root>/<last path part>-<12 hex of the URI's sha256>`: readable, and distinct for distinct URIs."""
    tail = re.sub(r"[^A-Za-z0-9_.-]+", "_", uri.rstrip("/").rsplit("/", 1)[-1])[:60] or "model"
    return root / f"{tail}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def check_uri(uri: str) -> str:
    """The URI's scheme, or a StorageError for one this runtime cannot fetch (before any network call)."""
    scheme = _SCHEME_RE.match(uri).group(1).lower()
    rest = uri[len(scheme) + 3:]
    if scheme == "pvc":
        raise StorageError(f"{uri}: pvc:// is a cluster-only URI (KServe mounts the claim at /mnt/models); outside "
                           "a cluster pass the claim's local path as --model_dir")
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(f"{uri}: unsupported storage scheme {scheme}://; supported: "
                           + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES) + ", or a local path")
    if not rest.split("/", 1)[0]:
        raise StorageError(f"{uri}: no bucket, host or repository after {scheme}://")
    if scheme == "s3":
        _check_s3_credentials(uri)
    return scheme


def _check_s3_credentials(uri: str) -> None:
    """kserve-storage builds its S3 client from boto3's credential chain unless awsAnonymousCredential is true;
    without credentials boto3 fails only inside the download workers, so say it here, before the download."""
    if os.environ.get("awsAnonymousCredential", "false").lower() == "true" or os.environ.get("STORAGE_CONFIG"):
        return
    import boto3

    if boto3.Session().get_credentials() is None:
        raise StorageError(f"{uri}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                           "AWS_ENDPOINT_URL for a server other than AWS), or awsAnonymousCredential=true for a "
                           "public bucket")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


class _DropErrors(logging.Filter):
    """kserve-storage logs each failure before raising it; the entry point prints the raised one as its one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


def download(uri: str, cache_dir: Path | None = None) -> Path:
    """The local folder holding `uri`'s files: a complete earlier download, else a new one."""
    check_uri(uri)
    target = cache_folder(uri, cache_root(cache_dir))
    if (target / COMPLETE_MARKER).is_file():
        log.info("model %s: reusing the download in %s", uri, target)
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as error:
        raise StorageError(f"cannot write the model cache {target.parent}: {_one_line(error)} (set "
                           "--model_cache_dir or HFSERVE_CACHE_DIR to a writable folder)") from None
    started = time.monotonic()
    try:
        _run_kserve_download(uri, staging)
        files = [p for p in staging.rglob("*") if p.is_file()]
        if not files:
            raise StorageError(f"{uri}: no files there (an empty prefix or folder?)")
        (staging / COMPLETE_MARKER).write_text(uri + "\n")
        if target.exists():  # an incomplete folder from an older layout: replace it
            shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    log.info("model %s: downloaded %d files to %s in %.1f s", uri, len(files), target, time.monotonic() - started)
    return target


def _run_kserve_download(uri: str, out_dir: Path) -> None:
    try:
        from kserve_storage import Storage
        from kserve_storage.logging import logger as storage_logger
    except ImportError:
        raise StorageError(f"{uri}: serving a storage URI needs KServe's storage library (pip install "
                           "kserve-storage==0.21.0); in a pod, give KServe the URI as storageUri instead") from None

    quiet = _DropErrors()
    storage_logger.addFilter(quiet)
    try:
        Storage.download(uri, str(out_dir))
    except StorageError:
        raise
    except Exception as error:  # kserve-storage raises RuntimeError and its clients' own types
        raise StorageError(f"cannot download {uri}: {_one_line(error)}") from None
    finally:
        storage_logger.removeFilter(quiet)


def wait_for_model_dir(model_dir: Path, timeout_s: float, environ=os.environ) -> None:
    """Under MODEL_INIT_MODE=async (KServe's modelcar: another container links the model in after we start), wait
    up to timeout_s for config.json (StorageError past it); otherwise the caller's own checks of the folder apply."""
    config_json = Path(model_dir) / "config.json"
    if environ.get("MODEL_INIT_MODE", "").lower() == "async" and not config_json.is_file():
        log.info("MODEL_INIT_MODE=async: waiting up to %.0f s for %s", timeout_s, config_json)
        deadline = time.monotonic() + timeout_s
        while not config_json.is_file():
            if time.monotonic() >= deadline:
                raise StorageError(f"{config_json} did not appear within {timeout_s:.0f} s (MODEL_INIT_MODE=async; "
                                   "--model_init_timeout_s)")
            time.sleep(0.2)
        log.info("model directory %s is there", model_dir)


def prepare_model_dir(location, cache_dir: Path | None = None, init_timeout_s: float = 600.0) -> Path:
    """What an entry point serves for --model_dir: a local folder, downloaded first when it is a URI."""
    if is_uri(location):
        if str(location).startswith("file://"):
            location = Path(str(location)[len("file://"):])
        else:
            return download(str(location), cache_dir)
    wait_for_model_dir(Path(location), init_timeout_s)
    return Path(location)
