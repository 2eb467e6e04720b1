"""The hostile-traffic suite (`make attack`, the conformance group `attack`): every reproduction of the security
review (../shared/reference/security-review-2026-12.md, issue 20) replayed against a target while a watcher polls
`/v2/health/live` (watch.py). A case fails on any 5xx, a liveness answer slower than 1 s, a response over its cap,
or the pod's RSS growing past the case's bound (local target only: there the pod's processes are on this machine).
The cases are in cases.py; conformance/test_attack.py runs them against both runtimes."""
