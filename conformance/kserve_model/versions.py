"""KServe releases the model knows, and the deployment modes.

Release-dependent rules (placeholder substitution in transformer-container since 0.15, the
runtime env policy since 0.18, the built-in runtimes) take a version string "0.MINOR".
"""

from __future__ import annotations

# 0.14 is modelled only to show why it is not supported (see pod_assembly).
KNOWN = ("0.14", "0.15", "0.21")
OLDEST_SUPPORTED = "0.15"
NEWEST = "0.21"
SUPPORTED = (OLDEST_SUPPORTED, NEWEST)

SERVERLESS = "Serverless"
RAW = "RawDeployment"

# pkg/constants/constants.go (DeploymentModeType): "Knative"/"Standard" are the names since
# v0.17-ish; "Serverless"/"RawDeployment" remain accepted as legacy spellings at HEAD.
_MODE_ALIASES = {"serverless": SERVERLESS, "knative": SERVERLESS, "rawdeployment": RAW, "standard": RAW, "raw": RAW}


def normalize_mode(mode: str) -> str:
    try:
        return _MODE_ALIASES[mode.lower()]
    except KeyError:
        raise ValueError(f"unknown deployment mode {mode!r}") from None


def minor(version: str) -> int:
    major, minor_, *_ = version.lstrip("v").split(".")
    if major != "0":
        raise ValueError(f"unexpected KServe version {version!r}")
    return int(minor_)


def at_least(version: str, floor: str) -> bool:
    return minor(version) >= minor(floor)
