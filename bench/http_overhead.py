"""Where an ``/identify`` request's time goes outside the networks: the HTTP layer, measured.

    python bench/http_overhead.py --rounds 4 [--baseline-tree DIR] --out bench/results/http_overhead.json

Per round, one live server (``app.testing.LiveServer``) per tree of code, all running at once, each
with a gallery of 20 enrolled photos and one client on one connection; the servers are asked call for
call, alternating which goes first, so the machine's drift falls on all alike. Per round and tree,
the medians of:

- ``whoami_ms``: ``GET /whoami``, a request that only checks its key;
- ``refused_ms``: ``POST /identify`` with bytes that are not an image, refused with a 4xx after the
  multipart body is parsed and the key checked (no network runs);
- ``identify_ms``: ``POST /identify`` of the 640x480 benchmark photo, and ``stages_ms``, the sum of its
  ``Server-Timing`` stages (decode, detect, align, embed, search), and the means of both;
- ``asgi_mean_ms``: the server's own mean time per ``/identify`` in the application, from its
  ``facerec_request_seconds`` histogram (``GET /metrics``), so that
  ``identify_mean - asgi_mean`` is the client, the connection and uvicorn, and ``asgi_mean - stages_mean`` the framework
  (middleware, dependencies, multipart, the worker-thread hop, the response's JSON).

With ``--baseline-tree DIR`` (another checkout, e.g. ``git worktree add /tmp/base HEAD~1``) the second
tree's server runs that checkout's code (the client, photos and settings are this one's), and each
round also gives the median of the call-for-call differences, baseline - this. Run it with other jobs
paused: these are differences of a few hundred microseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from bench.pipeline_speed import ONNX_CACHE, server_timing  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.http_overhead")
HISTOGRAM = re.compile(r'facerec_request_seconds_(sum|count)\{route="/identify"\} (\S+)')


def identify_histogram(client) -> tuple[float, float]:
    """The server's (seconds, requests) so far in its ``/identify`` latency histogram."""
    found = dict(HISTOGRAM.findall(client.get("/metrics").text))
    return float(found.get("sum", 0.0)), float(found.get("count", 0.0))


def interleaved_ms(calls: dict[str, object], repeats: int) -> dict[str, list[float]]:
    """Each tree's call timed ``repeats`` times, call for call, alternating which tree goes first."""
    for call in calls.values():
        call()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeats):
        for name in list(calls) if i % 2 == 0 else list(calls)[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(1000 * (time.perf_counter() - t0))
    return times


def measure(trees: dict[str, Path], photo: tuple[str, bytes], gallery: list[Path], repeats: int) -> dict:
    """One server per tree, all started at once and asked in turn: the medians of the module docstring
    per tree, and for each request kind the median of the per-turn differences (tree - ``this``)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        clients, stages = {}, {name: [] for name in trees}
        for name, tree in trees.items():
            server = stack.enter_context(
                LiveServer(
                    Path(tmp) / name, Path(tmp) / f"{name}.log", root=tree, FACEREC_ONNX_CACHE_DIR=str(ONNX_CACHE)
                )
            )
            clients[name] = client = stack.enter_context(server.client())
            for i, path in enumerate(gallery):
                client.post("/enroll", data={"name": f"person-{i}"}, files={"images": (path.name, path.read_bytes())})

        def identify(name: str) -> None:
            response = clients[name].post("/identify", files={"image": photo})
            response.raise_for_status()
            stages[name].append(sum(server_timing(response.headers["server-timing"]).values()))

        kinds = {
            "whoami_ms": lambda name: clients[name].get("/whoami").raise_for_status(),
            "refused_ms": lambda name: clients[name].post(
                "/identify", files={"image": ("not-an-image.jpg", b"not an image" * 100)}
            ),
            "identify_ms": identify,
        }
        out = {name: {} for name in trees} | {"difference_to_this": {}}
        for kind, call in kinds.items():
            # the /identify histogram from here on holds this kind's requests only (warm-up included)
            histogram = {name: identify_histogram(client) for name, client in clients.items()}
            times = interleaved_ms({name: functools.partial(call, name) for name in trees}, repeats)
            for name in trees:
                out[name][kind] = round(statistics.median(times[name]), 2)
                if kind == "identify_ms":  # the mean too: the server's histogram gives only its mean
                    out[name]["identify_mean_ms"] = round(statistics.mean(times[name]), 2)
                if name != "this":
                    diffs = [theirs - ours for ours, theirs in zip(times["this"], times[name])]
                    out["difference_to_this"][f"{name}_{kind}"] = round(statistics.median(diffs), 3)
        for name, client in clients.items():
            (seconds, count), (seconds_before, count_before) = identify_histogram(client), histogram[name]
            out[name]["asgi_mean_ms"] = round(1000 * (seconds - seconds_before) / (count - count_before), 2)
            out[name]["stages_ms"] = round(statistics.median(stages[name]), 2)
            out[name]["stages_mean_ms"] = round(statistics.mean(stages[name]), 2)
    return out


def commit_of(tree: Path) -> str:
    result = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"], capture_output=True
    )
    return result.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--baseline-tree", type=Path, help="another checkout whose server is measured alternately")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "http_overhead.json")
    args = parser.parse_args()
    if args.baseline_tree and not (args.baseline_tree / "app" / "main.py").is_file():
        parser.error(f"--baseline-tree {args.baseline_tree} is not a checkout of this project (no app/main.py)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photo = ("obama_640x480.jpg", jpeg_640x480(known / "test" / "obama1.jpg"))
    gallery = sorted((known / "train").glob("*/*"))[:20]
    trees = {"this": ROOT} | ({"baseline": args.baseline_tree.resolve()} if args.baseline_tree else {})
    rounds = []
    for i in range(args.rounds):
        rounds.append({"round": i + 1, **measure(trees, photo, gallery, args.repeats)})
        log.info("%s", rounds[-1])
    summary = {
        name: {k: round(statistics.median(r[name][k] for r in rounds), 3) for k in rounds[0][name]}
        for name in [*trees, "difference_to_this"]
    }
    result = {
        "command": "python bench/http_overhead.py " + " ".join(sys.argv[1:]),
        "commits": {name: commit_of(tree) for name, tree in trees.items()},
        "median_of_rounds": summary,
        "rounds": rounds,
    }
    log.info("%s", json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
