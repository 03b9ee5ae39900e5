"""The select-for-review flow on the real Prefect server, over a copy of the shared world (its champion, its
corrections): picks recorded with their scores, never picked twice, corrected images never offered, the CSV, the
contact sheet and the MLflow run; its deployment from prefect.yaml reads back with the daily schedule and parameters."""

from __future__ import annotations

import csv

import pytest

from flows.select_for_review import select_for_review
from yolo_retrain import tracking
from yolo_retrain.hashing import file_sha256
from yolo_retrain.selection.samples import SampleStore
from yolo_retrain.store import CorrectionStore

pytestmark = pytest.mark.e2e


def test_selection_flow_picks_never_twice_and_logs_why(world, world_copy):
    settings = world_copy
    folder = world.data.data_yaml.parent / "images"  # train + holdout: 36 images, the 24 corrected ones among them
    with CorrectionStore.from_settings(settings) as store:
        corrected = {c.image_sha256 for c in store.list()}
    assert corrected
    first = select_for_review(budget=4, sources=[str(folder)], include_samples=False)
    picks = first.choice.picks
    assert len(picks) == 4 and first.pool.scored + first.pool.excluded == 36
    assert first.pool.excluded >= 1 and not {p.candidate.sha256 for p in picks} & corrected  # corrected: never offered
    assert all(p.candidate.sha256 == file_sha256(p.candidate.path) for p in picks)
    assert [p.gain for p in picks] == sorted((p.gain for p in picks), reverse=True)

    with SampleStore.from_settings(settings) as samples:
        recorded = samples.list(selection_id=first.id)
    assert {s.image_sha256 for s in recorded} == {p.candidate.sha256 for p in picks}
    assert all(s.status == "selected" and s.score_detail["why"] for s in recorded)  # why each was picked

    rows = list(csv.DictReader(first.csv.open()))
    assert [r["image"] for r in rows] == [str(p.candidate.path) for p in picks] and all(r["uncertainty"] for r in rows)
    client = tracking.client_for(settings)
    run = client.get_run(first.run_id)
    assert run.data.tags["type"] == "selection" and run.info.status == "FINISHED"
    assert run.data.metrics["picked"] == 4 and run.data.metrics["scored"] == first.pool.scored
    assert {"contact_sheet.png", "selection.csv", "selection.json"} <= {a.path for a in client.list_artifacts(first.run_id)}

    second = select_for_review(budget=4, sources=[str(folder)], include_samples=False)
    assert second.pool.excluded == first.pool.excluded + 4  # the first selection's picks are left out
    assert not {p.candidate.sha256 for p in second.choice.picks} & {p.candidate.sha256 for p in picks}


def test_selection_deployment_reads_back_with_its_schedule_and_parameters(prefect_server):
    from prefect.client.orchestration import get_client

    from deployments.definitions import deployment_specs, to_runner_deployment

    deployment_id = to_runner_deployment(deployment_specs()["yolo-retrain-select"]).apply()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
    assert deployment.name == "yolo-retrain-select" and deployment.global_concurrency_limit.limit == 1
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 5 * * *" and schedule.parameters == {"budget": 50}
    properties = deployment.parameter_openapi_schema["properties"]
    assert set(properties) == {"budget", "sources", "include_samples", "project"}
    assert "Images to pick" in properties["budget"]["description"] and "globs" in properties["sources"]["description"]
