"""Add a ``gpu_limit`` job variable (``nvidia.com/gpu``) to a Kubernetes work pool's base job template.

Prefect's default Kubernetes template has CPU and memory variables but none for GPUs:

    prefect work-pool get-default-base-job-template --type kubernetes \\
        | python -m deployments.kubernetes_gpu_template > gpu-template.json
    prefect work-pool create yolo-retrain-kubernetes --type kubernetes --base-job-template gpu-template.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def add_gpu_limit(template: dict[str, Any]) -> dict[str, Any]:
    """The template with variable ``gpu_limit`` (default 1) set as the job container's ``nvidia.com/gpu`` limit."""
    template["variables"]["properties"]["gpu_limit"] = {
        "title": "GPU limit",
        "description": "GPUs (nvidia.com/gpu) for the retraining container.",
        "type": "integer",
        "default": 1,
    }
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    container.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = "{{ gpu_limit }}"
    return template


if __name__ == "__main__":
    json.dump(add_gpu_limit(json.load(sys.stdin)), sys.stdout, indent=2)
