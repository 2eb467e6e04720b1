"""`make chaos`: a bounded fault-injection soak against the kserve-huggingface-triton runtime, as the chart defines it.

    python -m loadtests.chaos [--minutes 5] [--seed 6] [--out reports/chaos] [--model_dir DIR]

The pod is the chart's own: the Triton runtime rendered by Helm and assembled as KServe would, run as local
processes (conformance.pods.process.EmulatedPod: the Triton container and the transformer container), with a
kubelet here that restarts an exited container after a short back-off. Steady load mixes V1, V2 and OpenAI
embeddings requests of varied lengths. Faults (faults.py) come in a fixed order that the seed shuffles, every kind
once per round, at seeded intervals: SIGKILL of tritonserver, of a Python-backend stub, of the transformer
container; SIGTERM (and the restart that follows) of either container; a burst of bad inputs. The soak lasts
`--minutes`, and longer until every kind of fault has happened once. Every request's outcome and time and every
fault's window are recorded.

Asserted (judge.py; exit status 1 otherwise; reports/chaos/summary.json says which):
- every answer is 200, a 4xx JSON error for the bad inputs, or a 503 with a JSON body;
- every 503 and every refused connection falls inside a fault window (plus GRACE_S);
- after every fault, SERVED_BETWEEN requests answered 200 outside the fault windows before the next one (the
  soak waits for them), OK_OUTSIDE_FLOOR in all, and every kind of fault injected;
- no request hangs past its timeout; service returns within the recovery limit after each fault;
- afterwards no process of the pod is left and no /dev/shm segment of its Triton;
- RSS of each process that lived through the run within +10% of its value after warm-up; open fds flat.
A PNG timeline (plot.py: requests/s, errors, latency, faults shaded) goes beside the summary.
"""
