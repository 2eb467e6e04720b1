"""The pods of the harness: one ClusterServingRuntime of the chart, as KServe assembles its predictor pod.

base.Pod      the interface and the shared code (probes, readiness, addresses, logs, argv)
process       EmulatedPod: the containers as processes on this machine (--target local)
podman        PodmanPod: the containers from the built images, in a podman pod (--target pods)
"""
