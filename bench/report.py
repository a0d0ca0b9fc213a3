"""Print the README's performance tables from the benchmark results in ``bench/results``.

python bench/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def speed(r: dict) -> list[str]:
    lines = [
        "| photo | faces | p50 ms | p95 ms | decode | detect | align | embed | search (ms, p50) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, v in r["identify"].items():
        s = v["stages_p50_ms"]
        lines.append(
            f"| {key} | {v['faces']} | {v['p50_ms']} | {v['p95_ms']} | "
            + " | ".join(str(s.get(k, "-")) for k in ("decode", "detect", "align", "embed", "search"))
            + " |"
        )
    lines += [
        "",
        f"Enrolment: **{r['enroll_photos_per_s']} photos/s** (one client; 12 Mpx phone-size JPEGs: "
        f"{r.get('enroll_12mpx_photos_per_s', '–')} photos/s). Concurrent `/identify` "
        "(640×480): "
        + ", ".join(
            f"{t['clients']} client{'s' * (t['clients'] > 1)}: {t['requests_per_s']} req/s" for t in r["throughput"]
        )
        + ".",
        "",
    ]
    if "server_cpu_ms_per_request" in r["throughput"][0]:
        lines += [
            "CPU per request (ms; server + the benchmark's own client, both on this machine): "
            + ", ".join(
                f"{t['clients']}: {t['server_cpu_ms_per_request']} + {t['client_cpu_ms_per_request']}"
                for t in r["throughput"]
            )
            + ". The pipeline alone in process (no HTTP, decoding or search): "
            + ", ".join(
                f"{t['threads']} thread{'s' * (t['threads'] > 1)}: {t['photos_per_s']} photos/s at "
                f"{t['cpu_ms_per_photo']} ms CPU each"
                for t in r.get("pipeline_in_process_throughput", [])
            )
            + ".",
            "",
        ]
    if r.get("peers"):
        lines += [
            "| pipeline (same photos, same run) | 640×480 p50 ms | ratio to ours (HTTP) | group p50 ms | "
            "ratio to ours (HTTP) |",
            "|---|---|---|---|---|",
        ]
        ours = r["identify"]
        keys = list(ours)
        lines.append(f"| **ours, over HTTP** | {ours[keys[0]]['p50_ms']} | 1.00 | {ours[keys[1]]['p50_ms']} | 1.00 |")
        for name, p in r["peers"].items():
            a, b = p[keys[0]], p[keys[1]]
            lines.append(
                f"| {name}, in-process | {a['p50_ms']} | {a['ratio_vs_our_http_p50']} | {b['p50_ms']} | "
                f"{b['ratio_vs_our_http_p50']} |"
            )
        lines.append("")
    return lines


def index(r: dict) -> list[str]:
    lines = [
        "| gallery | index | search p50 / p95 ms | recall@1 | recall@10 | memory MB | build s |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, row in r["sizes"].items():
        e = row["exact"]
        lines.append(f"| {int(n):,} | exact | {e['p50_ms']} / {e['p95_ms']} | 1.000 | 1.000 | {e['memory_mb']} | - |")
        for ef, h in row.get("hnsw", {}).items():
            lines.append(
                f"| {int(n):,} | HNSW efSearch={ef} | {h['p50_ms']} / {h['p95_ms']} | {h['recall_at_1']:.3f} | "
                f"{h['recall_at_10']:.3f} | {row['hnsw_file_mb']} | {row['hnsw_build_s']} |"
            )
    return lines + [""]


def enroll(r: dict) -> list[str]:
    lines = [
        f"{r['photos']}, {r['people_per_round']} people a round:",
        "",
        "| --jobs | photos/s (median) | ratio to --jobs 1 | server CPU ms/photo | client CPU ms/photo |",
        "|---|---|---|---|---|",
    ]
    for jobs, j in r["jobs"].items():
        lines.append(
            f"| {jobs} | {j['photos_per_s_median']} | {j['ratio_to_jobs_1_median']} | "
            f"{j['server_cpu_ms_per_photo']} | {j['client_cpu_ms_per_photo']} |"
        )
    return lines + [""]


def main() -> None:
    out = []
    for name, render in (
        ("pipeline_speed.json", speed),
        ("index_scale.json", index),
        ("enroll_speed.json", enroll),
        ("enroll_speed_12mpx.json", enroll),
    ):
        r = load(name)
        if r:
            out += [f"`{r['command']}`", "", *render(r)]
    for name in ("cold_start.json", "soak_identify.json"):
        r = load(name)
        if r:
            out += [
                f"`{r['command']}`: " + json.dumps({k: v for k, v in r.items() if k not in ("samples", "command")}),
                "",
            ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
