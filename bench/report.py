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
        ours = r["identify"]
        keys = list(ours)
        lines += [
            "| pipeline, same run | 640×480 p50 ms (HTTP / pipeline) | ratio to our pipeline | group p50 ms "
            "(HTTP / pipeline) | ratio to our pipeline |",
            "|---|---|---|---|---|",
            f"| **ours** | {ours[keys[0]]['p50_ms']} / {ours[keys[0]]['pipeline_p50_ms']} | 1.00 | "
            f"{ours[keys[1]]['p50_ms']} / {ours[keys[1]]['pipeline_p50_ms']} | 1.00 |",
        ]
        for runtime in (k for k in r if k.startswith("runtime_")):  # --baseline-runtime: ours on another runtime
            other = r[runtime]["identify"]
            lines.append(
                f"| ours, FACEREC_RUNTIME={runtime.removeprefix('runtime_')} | "
                + " | ".join(
                    f"{other[k]['p50_ms']} / {other[k]['pipeline_p50_ms']} | {r[runtime]['ratios'][k]}" for k in keys
                )
                + " |"
            )
        for name, p in r["peers"].items():
            lines.append(
                f"| {name}, in-process | "
                + " | ".join(
                    f"{p[k]['p50_ms']} | {p[k]['ratio_vs_our_pipeline_p50']} "
                    f"({p[k]['ratio_vs_our_http_p50']} against our HTTP time)"
                    for k in keys
                )
                + " |"
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


def http_overhead(r: dict) -> list[str]:
    """Per tree: /identify's mean time, the application's share outside the stages, the client's."""
    lines = [
        "| server (commit) | /identify p50 ms | mean | in the app (mean) | stages (mean) | app outside stages | "
        "client + uvicorn | GET /whoami p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tree, v in r["median_of_rounds"].items():
        if tree == "difference_to_this":
            continue
        lines.append(
            f"| {tree} ({r['commits'][tree]}) | {v['identify_ms']} | {v['identify_mean_ms']} | {v['asgi_mean_ms']} | "
            f"{v['stages_mean_ms']} | {v['asgi_mean_ms'] - v['stages_mean_ms']:.2f} | "
            f"{v['identify_mean_ms'] - v['asgi_mean_ms']:.2f} | {v['whoami_ms']} |"
        )
    differences = r["median_of_rounds"].get("difference_to_this")
    if differences:
        lines += ["", "Call for call, other - this (ms, median of the rounds' medians): " + json.dumps(differences)]
    return lines + [""]


def main() -> None:
    out = []
    for name, render in (
        ("pipeline_speed.json", speed),
        ("http_overhead.json", http_overhead),
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
