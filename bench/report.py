"""Markdown tables for docs/benchmarks.md from the JSON the bench scripts write with --out.

    .venv/bin/python bench/report.py bench/results/overhead.json bench/results/dataset_scale.json \
        bench/results/intake_throughput.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _machine(m: dict) -> str:
    return f"{m['cores']} vCPU {m['cpu']}, {m['memory_gib']} GiB, commit {m['git']}, load {m['load_average_at_start'][0]:.1f}"


def overhead(r: dict) -> list[str]:
    lines = [f"Machine: {_machine(r['machine'])}", "", f"Command: `.venv/bin/python {r['command']}`", ""]
    lines += [
        "| size | pairs | bare (a) median | flow (b) median | extra, median | ratio, median | fixed extra, median | allowed extra | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r["sizes"].items():
        size = s["size"]
        label = f"{name}: {size['train']}+{size['val']} images, {size['epochs']} epochs"
        lines.append(
            f"| {label} | {len(s['pairs'])} | {s['median_bare_s']:.1f} s | {s['median_flow_s']:.1f} s "
            f"| **{s['median_extra_s']:+.1f} s** | {s['median_ratio']:.3f} | {s.get('median_fixed_extra_s', float('nan')):.1f} s "
            f"| {s['allowed_extra_s']:.1f} s | {'met' if s['goal_met'] else '**missed**'} |"
        )
    lines += ["", "Pairs (bare / flow, s):", ""]
    for name, s in r["sizes"].items():
        pairs = ", ".join(f"{p['bare']['wall_s']:.1f} / {p['flow']['wall_s']:.1f}" for p in s["pairs"])
        lines.append(f"- {name}: {pairs}")
    names = list(r["sizes"])
    keys = list(r["sizes"][names[0]]["median_extra_breakdown_s"])
    lines += [
        "",
        "| where the extra time goes (median over pairs) | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for key in keys:
        lines.append(
            f"| {key} | "
            + " | ".join(f"{r['sizes'][n]['median_extra_breakdown_s'].get(key, 0.0):+.2f} s" for n in names)
            + " |"
        )
    return lines


def dataset_scale(r: dict) -> list[str]:
    lines = [f"Machine: {_machine(r['machine'])}", "", f"Command: `.venv/bin/python {r['command']}`", ""]
    lines += [
        "| step | time | peak RSS (during the step) | files hashed | image bytes copied | images |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in r["steps"].items():
        # ru_maxrss only grows: the mlflow step runs after a build in the same process, so its own peak is hidden
        rss = "n/a" if name == "mlflow" else f"{s['peak_rss_mib']:.0f} MiB (+{s['peak_rss_delta_mib']:.0f})"
        lines.append(
            f"| {name} | {s['seconds']:.2f} s | {rss} "
            f"| {s.get('hashed_files', '')} | {s.get('image_bytes_copied', s.get('bytes_copied', ''))} "
            f"| {s.get('images_in_dataset', '')} |"
        )
    lines += [
        "",
        f"cold / copy = {r['cold_over_copy_ratio']:.2f}, rebuild / copy = {r['rebuild_over_copy_ratio']:.2f}",
        "",
    ]
    for goal, g in r["goals"].items():
        lines.append(f"- {goal}: {g['value']} (goal {g['goal']}): {'met' if g['met'] else 'missed'}")
    return lines


def intake_throughput(r: dict) -> list[str]:
    lines = [f"Machine: {_machine(r['machine'])}", "", f"Command: `.venv/bin/python {r['command']}`", ""]
    lines += ["| path | client threads | corrections | corrections/s | p50 | p95 |", "|---|---|---|---|---|---|"]
    for run in r["http"]["runs"]:
        lines.append(
            f"| HTTP | {run['concurrency']} | {run['corrections']} | {run['per_s']:.0f} "
            f"| {run['latency_p50_ms']:.1f} ms | {run['latency_p95_ms']:.1f} ms |"
        )
    api = r["api"]
    lines.append(f"| Python API | 1 | {api['corrections']} | {api['per_s']:.0f} | | |")
    if r["http"]["cli_add_s"]:
        lines.append(
            f"\n`yolo-retrain corrections add`: {', '.join(f'{s:.1f}' for s in r['http']['cli_add_s'])} s per process"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.results:
        r = json.loads(path.read_text())
        print(f"### {path}\n")
        print(
            "\n".join(
                {"overhead": overhead, "dataset_scale": dataset_scale, "intake_throughput": intake_throughput}[
                    r["benchmark"]
                ](r)
            )
        )
        print()


if __name__ == "__main__":
    main()
