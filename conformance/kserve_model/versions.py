"""The KServe and Knative Serving versions the model knows, the storage-initializer
configuration each KServe version ships, and the deployment-mode names.

A KServe version is "0.MINOR" or "master"; a rule that changed says so with
`at_least(version, "0.MINOR")` and cites the tag or commit where the source changed. Sources
read (kserve/kserve): v0.15.0 `d20d4228`, v0.16.0 `5b033a40`, v0.17.0 `c71eba91`, v0.18.0
`3a432a84`, v0.20.0 `1fb78105` (the newest tag in the source read) and master `aaac4e29`
(2026-08-21), which the model also answers to as "0.21": the kserve 0.21.0 packages were cut
from that line later; its rules were not re-read at a v0.21.0 tag.

A Knative version is "1.MINOR" (knative/serving knative-v1.15.2 `038a1816`, knative-v1.17.0
`6265a8ec`, knative-v1.21.1 `69aa052f`, knative-v1.23.0, main `98e5ef90`).
"""

from __future__ import annotations

import copy
from typing import Any

# 0.14 is modelled only to show why it is not supported (see pod_assembly).
KNOWN = ("0.14", "0.15", "0.16", "0.17", "0.18", "0.19", "0.20", "master")
OLDEST_SUPPORTED = "0.15"
NEWEST_RELEASE = "0.20"
NEWEST = "master"
# the versions every chart scenario is run through (tests/chart/kserve_matrix.py)
SUPPORTED = ("0.15", "0.16", "0.18", "0.20", "master")
_MASTER_MINOR = 21

KNATIVE_KNOWN = ("1.15", "1.17", "1.21", "1.23")
KNATIVE_NEWEST = "1.23"

SERVERLESS = "Serverless"
RAW = "RawDeployment"


def minor(version: str) -> int:
    if version == "master":
        return _MASTER_MINOR
    major, minor_, *_ = version.lstrip("v").split(".")
    if major != "0":
        raise ValueError(f"unexpected KServe version {version!r}")
    return int(minor_)


def at_least(version: str, floor: str) -> bool:
    return minor(version) >= minor(floor)


def knative_minor(version: str) -> int:
    major, minor_, *_ = version.removeprefix("knative-").lstrip("v").split(".")
    if major != "1":
        raise ValueError(f"unexpected Knative Serving version {version!r}")
    return int(minor_)


def knative_at_least(version: str, floor: str) -> bool:
    return knative_minor(version) >= knative_minor(floor)


def knative_installed_by(kserve_version: str) -> str:
    """The Knative Serving that KServe's own installer sets up: hack/quick_install.sh
    `KNATIVE_SERVING_VERSION=1.15.2` at v0.15.0 and v0.16.0, kserve-deps.env
    `KNATIVE_SERVING_VERSION=1.21.1` from v0.17.0 to master."""
    return "1.21" if at_least(kserve_version, "0.17") else "1.15"


# config/configmap/inferenceservice.yaml, `storageInitializer` (and charts/kserve-resources values):
# v0.15.0 `"enableDirectPvcVolumeMount": true, "enableModelcar": false` and no uidModelcar;
# v0.16.0 `"enableModelcar": true, "uidModelcar": 1010`, and the PVC flag is gone: a pvc:// URI is
# always mounted directly (v0.16.0 storage_initializer_injector.go, `PvcURIPrefix` branch).
def storage_initializer_config(kserve_version: str) -> dict[str, Any]:
    """Each version's default storage-initializer config (the keys the model reads)."""
    if at_least(kserve_version, "0.16"):
        return {"enableModelcar": True, "uidModelcar": 1010, "enableDirectPvcVolumeMount": True}
    return {"enableModelcar": False, "uidModelcar": None, "enableDirectPvcVolumeMount": True}


def storage_config(kserve_version: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    out = copy.deepcopy(storage_initializer_config(kserve_version))
    out.update(overrides or {})
    if at_least(kserve_version, "0.16"):
        out["enableDirectPvcVolumeMount"] = True  # no longer a setting
    return out


# pkg/controller/v1beta1/inferenceservice/utils/utils.go `GetDeploymentMode`: exact strings.
# v0.15.0 knows "Serverless", "RawDeployment" and "ModelMesh"; v0.16.0 (constants.go) adds
# "Knative" and "Standard", and keeps the old names as legacy spellings; any other value (a
# lower-case "standard" too) means the cluster's default mode.
_MODE_NAMES_015 = {"Serverless": SERVERLESS, "RawDeployment": RAW}
_MODE_NAMES_016 = {**_MODE_NAMES_015, "Knative": SERVERLESS, "Standard": RAW}
# what a test or caller may pass as a cluster default
_CLUSTER_DEFAULT_ALIASES = {"serverless": SERVERLESS, "knative": SERVERLESS, "rawdeployment": RAW,
                            "standard": RAW, "raw": RAW}


def normalize_mode(mode: str) -> str:
    """A cluster default mode, as callers of the model spell it."""
    try:
        return _CLUSTER_DEFAULT_ALIASES[mode.lower()]
    except KeyError:
        raise ValueError(f"unknown deployment mode {mode!r}") from None


def annotation_mode(value: str | None, kserve_version: str) -> str | None:
    """The mode an ISVC's `serving.kserve.io/deploymentMode` names on that version (None: the
    cluster default applies)."""
    names = _MODE_NAMES_016 if at_least(kserve_version, "0.16") else _MODE_NAMES_015
    return names.get(value or "")
