"""Replicas on one PostgreSQL: replication lag and identify throughput with 1, 2 and 3 replicas.

    python bench/replication.py --events 40 --seconds 20 --out bench/results/replication.json

A throwaway PostgreSQL cluster (``app.testing.PostgresServer``) and N real uvicorn processes on it,
each with its own state directory. Then, per N:

- *lag* (N >= 2): one replica enrols a face (or deletes an identity), and the others are polled
  every 5 ms until their index holds the change (``/health``: ``faces_indexed``): seconds from the
  writer's response to each other replica having it. Each enrolment of an ``obama`` photo is then
  confirmed on another replica: ``/identify`` on another photo of him lists it among its candidates. (A deletion stops *matching* everywhere at once,
  since search results are resolved in the database; what is timed is its vectors leaving the
  other replicas' indexes, after which their snapshot files are rewritten at once.)
- *throughput*: ``--clients`` threads send ``/identify`` (a 640x480 one-face photo) for
  ``--seconds``, spread round-robin over the replicas directly (no load balancer): requests/s.

A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer, PostgresServer  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.replication")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def indexed(client: httpx.Client) -> int:
    return client.get("/health").json()["faces_indexed"]


def measure_lag(clients: list[httpx.Client], photos: list[tuple[str, str, bytes]], probe: bytes, events: int) -> dict:
    """``probe`` is a photo of ``obama``: each enrolment of one of his photos is confirmed on another
    replica by /identify naming it."""
    enrol_lag, delete_lag, confirmed, checked = [], [], 0, 0
    for k in range(events):
        writer, others = clients[k % len(clients)], [c for i, c in enumerate(clients) if i != k % len(clients)]
        before = indexed(writer)
        person, name, data = photos[k % len(photos)]
        r = writer.post("/enroll", data={"name": f"lag-{k}"}, files=[("images", (name, data))])
        r.raise_for_status()
        done = time.perf_counter()
        for other in others:
            while indexed(other) != before + 1:
                time.sleep(0.005)
            enrol_lag.append(time.perf_counter() - done)
        if person == "obama":  # named on another replica
            answer = others[0].post("/identify", files=[("image", ("probe.jpg", probe))], data={"top_k": 10}).json()
            checked += 1  # among the candidates (an earlier enrolment of his may rank first)
            confirmed += any(c["name"] == f"lag-{k}" for f in answer["faces"] for c in f["candidates"])
        if k % 2:
            identity = r.json()["identity"]["id"]
            writer.delete(f"/identities/{identity}").raise_for_status()
            done = time.perf_counter()
            for other in others:
                while indexed(other) != before:
                    time.sleep(0.005)
                delete_lag.append(time.perf_counter() - done)
    summary = {}
    for label, values in (("enrol", enrol_lag), ("delete", delete_lag)):
        summary[label] = {
            "samples": len(values),
            "p50_s": round(statistics.median(values), 4),
            "p99_s": round(percentile(values, 0.99), 4),
            "max_s": round(max(values), 4),
        }
    summary["identify_confirmed"] = f"{confirmed} of {checked}"
    return summary


def measure_throughput(servers: list[LiveServer], probe: bytes, clients: int, seconds: float) -> dict:
    counts, latencies, errors = [0] * clients, [], []
    stop = time.perf_counter() + seconds

    def run(k: int) -> None:
        with servers[k % len(servers)].client() as c:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                r = c.post("/identify", files=[("image", ("probe.jpg", probe))])
                if r.status_code != 200:
                    errors.append(r.status_code)
                latencies.append(time.perf_counter() - t0)
                counts[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "clients": clients,
        "requests_per_s": round(sum(counts) / seconds, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "errors": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--events", type=int, default=40, help="enrolments timed per replica count")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput window")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "replication.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photos = [(p.parent.name, p.name, p.read_bytes()) for p in sorted((known / "train").glob("*/*"))]
    probe = jpeg_640x480(known / "test" / "obama1.jpg")
    results = []
    with PostgresServer() as pg:
        for n in args.replicas:
            url = pg.create_database(f"bench_{n}")
            work = Path(pg.root).parent / f"facerec-bench-{n}-{int(time.time())}"
            servers = [
                LiveServer(work / f"state{i}", work / f"server{i}.log", FACEREC_DATABASE_URL=url) for i in range(n)
            ]
            try:
                for s in servers:
                    s.start()
                clients = [s.client() for s in servers]
                row = {"replicas": n}
                if n > 1:
                    row["lag"] = measure_lag(clients, photos, probe, args.events)
                row["throughput"] = measure_throughput(servers, probe, args.clients, args.seconds)
                for c in clients:
                    c.close()
            finally:
                for s in servers:
                    s.stop()
            log.info("%s", json.dumps(row))
            results.append(row)
    report = {
        "command": "python bench/replication.py " + " ".join(sys.argv[1:]),
        "machine": "2-core CPU (this repository's CI machine); all replicas and PostgreSQL on it",
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
