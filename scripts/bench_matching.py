"""What the matching engine adds to an event at gallery sizes: seed N identities, load an index, time queries.

Per size: seeding (put_many), the index's first full load, then per query the refresh with nothing changed (one
round trip) plus the match itself, and a refresh after CHANGES writes. Queries are noisy copies of stored vectors,
so every one must come back as a match to its own identity (checked). --old also times today's ReidGallery
(one lock, every identity read per event) at the sizes given to it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's packages, even where another one is installed

from tasks.matching import Gallery, GalleryIndex  # noqa: E402

console = Console()
MODEL_ID = "bench-embedder.pt:000000000000"
SEED_BATCH = 5_000
CHANGES = 100


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((count, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def identity(i: int) -> str:
    return f"person-{i:07d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def seed(gallery: Gallery, size: int, dim: int, rng: np.random.Generator) -> tuple[float, dict[int, np.ndarray]]:
    """Store `size` random identities; returns the seconds taken and a few stored vectors to query with."""
    kept: dict[int, np.ndarray] = {}
    probes = set(rng.choice(size, size=min(size, 64), replace=False).tolist())
    started = time.perf_counter()
    for start in range(0, size, SEED_BATCH):
        rows = unit_rows(rng, min(SEED_BATCH, size - start), dim)
        gallery.put_many((identity(start + i), row, MODEL_ID, "0") for i, row in enumerate(rows))
        kept |= {start + i: rows[i] for i in range(len(rows)) if start + i in probes}
    return time.perf_counter() - started, kept


def bench_engine(client, size: int, dim: int, queries: int, threshold: float) -> dict:
    rng = np.random.default_rng(size)
    gallery = Gallery(client, f"bench-{size}")
    gallery.delete(gallery.changes_since(None).put)
    seed_s, probes = seed(gallery, size, dim, rng)
    index = GalleryIndex(gallery)
    load = index.refresh()
    sync_ms, match_ms, wrong = [], [], 0
    targets = list(probes)
    for q in range(queries):
        target = targets[q % len(targets)]
        query = probes[target] + 0.01 * rng.standard_normal(dim).astype(np.float32)  # cosine about 0.97
        started = time.perf_counter()
        stats = index.refresh()
        synced = time.perf_counter()
        answer = index.match(query, MODEL_ID, threshold, refresh=False)
        done = time.perf_counter()
        sync_ms.append((synced - started) * 1000)
        match_ms.append((done - synced) * 1000)
        wrong += stats.read != 0 or answer.outcome != "match" or answer.identity != identity(target)
    changed = unit_rows(rng, CHANGES, dim)
    gallery.put_many((identity(i), row, MODEL_ID, "0") for i, row in enumerate(changed))
    after_changes = index.refresh()
    total = [s + m for s, m in zip(sync_ms, match_ms)]
    info = client.info("memory")
    return {
        "size": size, "dim": dim, "queries": queries, "seed_s": round(seed_s, 1),
        "full_load_ms": round(load.ms, 1), "full_load_read": load.read,
        "sync_unchanged_p50_ms": round(statistics.median(sync_ms), 2),
        "match_p50_ms": round(statistics.median(match_ms), 2), "match_p95_ms": round(percentile(match_ms, 0.95), 2),
        "added_p50_ms": round(statistics.median(total), 2), "added_p95_ms": round(percentile(total, 0.95), 2),
        f"sync_after_{CHANGES}_changes_ms": round(after_changes.ms, 2), "sync_after_changes_read": after_changes.read,
        "wrong_answers": wrong, "index_mb": round(sum(b.matrix.nbytes for b in index.blocks.values()) / 2**20, 1),
        "redis_used_mb": round(info["used_memory"] / 2**20, 1),
    }


def bench_old(client, size: int, dim: int, queries: int) -> dict:
    """Today's ReidGallery: every identity's template read under one lock per sighting."""
    from tasks.reid_gallery import ReidGallery

    rng = np.random.default_rng(size)
    prefix = f"oldreid-{size}"
    gallery = ReidGallery(client, threshold=0.9, prefix=prefix, lock_timeout=60, lock_wait=60)
    started = time.perf_counter()
    for start in range(0, size, SEED_BATCH):
        pipe = client.pipeline(transaction=False)
        rows = unit_rows(rng, min(SEED_BATCH, size - start), dim)
        for i, row in enumerate(rows):
            name = identity(start + i)
            pipe.hset(f"{prefix}:identity:{name}", mapping={"embedding": row.astype("<f4").tobytes(),
                                                             "sighting_count": 1, "first_seen": "0.0",
                                                             "last_seen": "0.0"})
            pipe.zadd(f"{prefix}:index", {name: 0.0})
        pipe.execute()
    seed_s = time.perf_counter() - started
    times = []
    for _ in range(queries):
        query = unit_rows(rng, 1, dim)[0]
        began = time.perf_counter()
        gallery._best_match(query)  # the part of match_or_add that grows with the gallery
        times.append((time.perf_counter() - began) * 1000)
    return {"size": size, "queries": queries, "seed_s": round(seed_s, 1),
            "old_match_p50_ms": round(statistics.median(times), 1)}


def main(
    sizes: str = typer.Option("40000,500000", help="Gallery sizes, comma list"),
    dim: int = typer.Option(512, help="Vector length"),
    queries: int = typer.Option(200, help="Queries per size"),
    threshold: float = typer.Option(0.9, help="Match threshold"),
    old: str = typer.Option("", help="Also time today's ReidGallery at these sizes (comma list)"),
    redis_url: str = typer.Option("", help="Use this Redis (its data is kept); default: a fresh local redis-server"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here")] = None,
) -> None:
    """Seed galleries of each size and report the engine's per-event cost."""
    import redis

    server = None
    if redis_url:
        client = redis.Redis.from_url(redis_url)
    else:
        from tasks.local_pool import RedisServer

        server = RedisServer().start()
        client = server.client()
    report = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "numpy": np.__version__, "results": [], "old": []}
    try:
        for size in [int(s) for s in sizes.split(",") if s.strip()]:
            console.print(f"[bold]engine[/bold] seeding {size:,} x {dim} ...")
            report["results"].append(bench_engine(client, size, dim, queries, threshold))
            console.print(report["results"][-1])
            client.flushall(asynchronous=True)
        for size in [int(s) for s in old.split(",") if s.strip()]:
            console.print(f"[bold]old ReidGallery[/bold] seeding {size:,} x {dim} ...")
            report["old"].append(bench_old(client, size, dim, min(queries, 20)))
            console.print(report["old"][-1])
            client.flushall(asynchronous=True)
    finally:
        client.close()
        if server is not None:
            server.cleanup()
    table = Table("identities", "seed s", "full load ms", "sync (no change) p50", "match p50", "added p50", "added p95",
                  f"sync after {CHANGES}", "index MB", "wrong")
    for r in report["results"]:
        table.add_row(f"{r['size']:,}", str(r["seed_s"]), str(r["full_load_ms"]), str(r["sync_unchanged_p50_ms"]),
                      str(r["match_p50_ms"]), str(r["added_p50_ms"]), str(r["added_p95_ms"]),
                      str(r[f"sync_after_{CHANGES}_changes_ms"]), str(r["index_mb"]), str(r["wrong_answers"]))
    console.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if any(r["wrong_answers"] for r in report["results"]):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
