"""prefect.yaml: the variants share one schedule/trigger/limit definition; the GPU template helper works."""

from __future__ import annotations

import json
import subprocess
import sys

from deployments.definitions import deployment_specs
from deployments.kubernetes_gpu_template import add_gpu_limit
from yolo_retrain.config import PROJECT_ROOT


def test_variants_share_schedule_trigger_and_limit():
    specs = deployment_specs()
    assert set(specs) == {"yolo-retrain", "yolo-retrain-docker", "yolo-retrain-kubernetes", "yolo-retrain-select", "review-candidate"}
    review = specs.pop("review-candidate")  # a person's decision: no schedule, no trigger, no GPU
    assert review["entrypoint"] == "flows/review.py:review_candidate" and not review.get("schedules") and not review.get("triggers")
    selection = specs.pop("yolo-retrain-select")  # the selection for review: its own flow and daily schedule
    assert selection["entrypoint"] == "flows/select_for_review.py:select_for_review" and selection["concurrency_limit"] == 1
    assert selection["schedules"][0]["cron"] == "0 5 * * *" and not selection.get("triggers")
    base = specs["yolo-retrain"]
    for spec in specs.values():
        assert spec["schedules"] == base["schedules"] and spec["triggers"] == base["triggers"]
        assert spec["concurrency_limit"] == 1 and spec["entrypoint"] == "flows/retrain.py:retrain"
    assert specs["yolo-retrain-docker"]["work_pool"]["job_variables"]["container_create_kwargs"]["device_requests"]
    assert specs["yolo-retrain-kubernetes"]["work_pool"]["job_variables"]["gpu_limit"] == 1
    for name in ("yolo-retrain-docker", "yolo-retrain-kubernetes"):
        steps = [next(iter(step)) for step in specs[name]["pull"]]
        assert steps[0] == "prefect.deployments.steps.git_clone"


def test_gpu_limit_is_added_to_a_kubernetes_job_template():
    template = {
        "variables": {"properties": {"image": {"type": "string"}}},
        "job_configuration": {
            "job_manifest": {
                "spec": {"template": {"spec": {"containers": [{"name": "prefect-job", "resources": {"limits": {"cpu": "{{ cpu_limit }}"}}}]}}}
            }
        },
    }
    result = subprocess.run(
        [sys.executable, "-m", "deployments.kubernetes_gpu_template"],
        input=json.dumps(template), capture_output=True, text=True, cwd=PROJECT_ROOT, check=True,
    )
    updated = json.loads(result.stdout)
    limits = updated["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "{{ cpu_limit }}", "nvidia.com/gpu": "{{ gpu_limit }}"}
    assert updated["variables"]["properties"]["gpu_limit"]["default"] == 1
    assert add_gpu_limit(json.loads(json.dumps(template))) == updated
