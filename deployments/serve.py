"""Serve the deployments of prefect.yaml from this process with ``serve()``: no work pool, no worker.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m deployments.serve
"""

from __future__ import annotations

from yolo_retrain.config import configure_environment

configure_environment()  # this script is an entry point: environment before Prefect is imported below
from deployments.definitions import deployment_specs, to_runner_deployment  # noqa: E402

# The process variant: serve() runs these flows in this process, like a process worker: the retrain, a person's
# decision on a held candidate, the daily selection for review.
SERVED = ("yolo-retrain", "review-candidate", "yolo-retrain-select")

# Check for scheduled or triggered runs every 2 s (Prefect's default is 10 s): a threshold-triggered
# retrain should start within seconds.
POLL_SECONDS = 2


def main() -> None:
    from prefect import serve

    specs = deployment_specs()
    serve(*(to_runner_deployment(specs[name]) for name in SERVED), query_seconds=POLL_SECONDS)


if __name__ == "__main__":
    main()
