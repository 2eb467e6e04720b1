"""An executable model of what KServe and Knative do with this project's ServingRuntimes.

Written in Python from a reading of KServe's (kserve/kserve) and Knative Serving's
(knative/serving) source; every rule names the file and function it restates. No cluster is
involved: the chart tests run the chart's objects through these rules, and the pod emulation
(conformance/pods/process.py) starts the pod that `assemble_pod` builds.

    from conformance.kserve_model import assemble_pod, admit_cluster_runtime, select_runtime
    pod = assemble_pod(runtime_manifest, isvc, mode="Serverless", kserve_version="0.15",
                       knative_version="1.15", storage_initializer={"enableModelcar": True})

Versions are dimensions: each rule that changed names the KServe tag ("0.MINOR", or "master")
or Knative tag ("1.MINOR") where its source changed (versions.py).

Modules: versions (KServe and Knative versions, storage-initializer defaults, mode names),
runtime_defaults (server type, SetRuntimeDefaults, UpdateImageTag), autoscaling (Knative
annotations, HPA/KEDA in Standard mode), builtin_runtimes (the runtimes KServe ships),
admission (CRD schema + ClusterServingRuntime webhook), selection (which runtime an
InferenceService gets), templating (KServe's Go-template placeholder pass), pod_assembly (the
predictor pod), knative (Knative's admission and revision rewrite), metrics (Prometheus
annotations), raw_service (the Standard-mode Service).
"""

from .admission import AdmissionError, admit_cluster_runtime, admit_inference_service, crd_problems
from .builtin_runtimes import builtin_runtimes
from .knative import DEFAULT_FEATURES, KnativeRejected, knative_problems
from .metrics import scrape_target
from .pod_assembly import InvalidPredictorSpec, StorageInitializerFails, assemble_pod, controller_pod_spec
from .raw_service import raw_service_ports
from .selection import NoSupportingRuntime, select_runtime
from .templating import TemplateError, render_placeholders
from .versions import (
                       KNATIVE_KNOWN,
                       KNATIVE_NEWEST,
                       NEWEST,
                       NEWEST_RELEASE,
                       OLDEST_SUPPORTED,
                       SUPPORTED,
                       normalize_mode,
                       storage_initializer_config,
)

__all__ = [
    "AdmissionError", "admit_cluster_runtime", "admit_inference_service", "crd_problems", "builtin_runtimes",
    "DEFAULT_FEATURES",
    "KnativeRejected", "knative_problems", "scrape_target", "InvalidPredictorSpec", "assemble_pod",
    "controller_pod_spec", "raw_service_ports", "NoSupportingRuntime", "select_runtime", "TemplateError",
    "render_placeholders", "NEWEST", "OLDEST_SUPPORTED", "SUPPORTED", "normalize_mode", "StorageInitializerFails",
    "KNATIVE_KNOWN", "KNATIVE_NEWEST", "NEWEST_RELEASE", "storage_initializer_config",
]
