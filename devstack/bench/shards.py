"""``devstack bench shards``: the wall time of one sharded job as the cluster grows.

For each cluster size in ``--nodes``, a fresh devstack of that many nodes of
``--slots`` slots each: ``--files`` text files of ``--file-kb`` KiB (seeded pseudo-random words, the
same bytes every run) are added to node-0 once, then ``--repeat`` times node-0 is
given the job that shards them ``--batch`` files a shard and runs ``--work`` on each
(busybox, concurrency 1), timed from the POST until the requester says
``completed``. Per run also: the distinct nodes that ran shards and the sum of the
shards' container run times (``run_ms`` of the requester's ``proposed`` events). Each
run's output is checked: the shards' stdouts together name every input file, each
in exactly one shard, and for the default work give each file's word count and
SHA-256 as computed here. Reported per size: wall time median / min / max, nodes
used, shards (or why that size could not run; the next size is tried); and the
speedup of the largest size over the smallest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from devstack import jobs
from devstack.bench.harness import BenchCluster, bench_cluster, report, say, settle, summarize
from devstack.bench.options import SHARDS_WORK as DEFAULT_WORK
from devstack.bench.workload import requester_events
from devstack.client import NodeApiError, NodeClient
from devstack.cluster import ClusterError
from node.compute import STDOUT_PREVIEW_BYTES
from node.content.tarball import path_entries, tar_stream
from node.models import INPUTS_ROOT, InputSource, JobSpec, Sharding

IMAGE = "busybox"
GLOB = f"{INPUTS_ROOT}/*.txt"
JOB_TIMEOUT_S = 600.0
SEED = 2022
PROBLEMS_SHOWN = 5

_INPUT_PATH = re.compile(re.escape(INPUTS_ROOT) + r"/(\S+)")


# -- inputs -----------------------------------------------------------------------------


def file_name(index: int) -> str:
    return f"file-{index:04d}.txt"


def make_text(index: int, size: int) -> bytes:
    """``size`` bytes of lines of pseudo-random lowercase words, the same for the same
    ``index`` on every run (the generator is seeded with it)."""
    rng = random.Random(SEED * 1_000_003 + index)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(512)]
    lines, length = [], 0
    while length < size:
        line = " ".join(rng.choices(vocabulary, k=12)) + "\n"
        lines.append(line)
        length += len(line)
    text = "".join(lines).encode()[:size]
    return text[:-1] + b"\n" if text else text


def write_inputs(directory: Path, files: int, size: int) -> dict[str, bytes]:
    """Write ``files`` text files of ``size`` bytes into ``directory``; name -> content."""
    contents = {file_name(i): make_text(i, size) for i in range(files)}
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    return contents


def add_inputs(api: str, directory: Path) -> str:
    """Add ``directory`` to the node at ``api``; its CID."""
    with NodeClient(api) as client:
        return client.add_content(tar_stream(path_entries(directory, "inputs")))


# -- checks and figures (pure) -----------------------------------------------------------


def coverage(stdouts: Sequence[str], names: Sequence[str]) -> list[str]:
    """What is wrong with how the shards' ``stdouts`` cover the input files ``names``
    (each must be named, as ``/inputs/NAME``, by exactly one shard); [] if nothing."""
    shards_naming: Counter[str] = Counter()
    for stdout in stdouts:
        shards_naming.update(set(_INPUT_PATH.findall(stdout)))
    problems = [f"{name}: in no shard's output" for name in names if name not in shards_naming]
    problems += [
        f"{name}: in the output of {shards_naming[name]} shards"
        for name in names
        if shards_naming[name] > 1
    ]
    known = set(names)
    problems += [f"{name}: not an input file" for name in sorted(set(shards_naming) - known)]
    return problems


def expected_lines(contents: Mapping[str, bytes]) -> Counter[tuple[str, ...]]:
    """What the default work prints for ``contents`` (name -> bytes), each line as its
    whitespace-separated fields: the word count, the SHA-256 and the number of
    distinct words of every file."""
    lines: Counter[tuple[str, ...]] = Counter()
    for name, data in contents.items():
        path = f"{INPUTS_ROOT}/{name}"
        lines[(str(len(data.split())), path)] += 1
        lines[(hashlib.sha256(data).hexdigest(), path)] += 1
        lines[(str(len(set(data.split()))), path)] += 1
    return lines


def output_mismatches(stdouts: Sequence[str], contents: Mapping[str, bytes]) -> list[str]:
    """Lines the default work should have printed and did not, and lines it printed
    that it should not have; [] if the output is exactly right."""
    got: Counter[tuple[str, ...]] = Counter(
        tuple(line.split()) for stdout in stdouts for line in stdout.splitlines() if line.strip()
    )
    want = expected_lines(contents)
    missing = [f"missing: {' '.join(line)}" for line in sorted((want - got).elements())]
    extra = [f"unexpected: {' '.join(line)}" for line in sorted((got - want).elements())]
    return missing + extra


def run_figures(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Shards, the distinct nodes that ran them and their summed run time (s), from the
    requester's ``proposed`` events of one job."""
    mine = requester_events(answer["events"], answer["requester"])
    proposed = [e for e in mine if e["kind"] == "proposed"]
    return {
        "shards": answer["job"]["job"]["shards"],
        "nodes_used": len({e["detail"]["peer"] for e in proposed}),
        "run_s_sum": round(sum(e["detail"].get("run_ms", 0.0) for e in proposed) / 1000.0, 2),
    }


def speedup(sizes: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Median wall time of the smallest cluster over that of the largest (both must
    have completed runs); None with fewer than two sizes."""
    measured = [s for s in sizes if s["wall_s"] is not None]
    if len(measured) < 2:
        return None
    small = min(measured, key=lambda s: s["nodes"])
    large = max(measured, key=lambda s: s["nodes"])
    return {
        "from_nodes": small["nodes"],
        "to_nodes": large["nodes"],
        "median_wall": round(small["wall_s"]["median"] / large["wall_s"]["median"], 2),
    }


# -- the bench --------------------------------------------------------------------------


def shard_stdouts(cluster: BenchCluster, answer: dict[str, Any]) -> list[str]:
    """Each shard's stdout: the previews of its published runs when none was cut short,
    else every shard's results fetched over bitswap."""
    previews: dict[int, str] = {}
    for execution in answer["job"]["executions"]:
        if execution["state"] == "published" and execution["stdout_preview"] is not None:
            previews.setdefault(execution["shard"], execution["stdout_preview"])
    whole = all(len(p.encode()) < STDOUT_PREVIEW_BYTES for p in previews.values())
    if len(previews) == answer["job"]["job"]["shards"] and whole:
        return [previews[shard] for shard in sorted(previews)]
    return jobs.shard_stdouts(cluster.state, answer)


def run_once(
    cluster: BenchCluster, spec: JobSpec, contents: Mapping[str, bytes], check: bool
) -> dict[str, Any]:
    """Submit ``spec`` to node-0, wait for it to end, and check what it printed."""
    api = cluster.state.nodes[0].api
    with NodeClient(api) as client:
        start = time.perf_counter()
        job_id = client.submit(spec)["id"]
    answer = jobs.wait(api, job_id, JOB_TIMEOUT_S)
    wall = time.perf_counter() - start
    record = answer["job"]
    run: dict[str, Any] = {"job_id": job_id, "state": record["state"]}
    if record["state"] != "completed":
        return run | {"reason": record["reason"]}
    stdouts = shard_stdouts(cluster, answer)
    problems = coverage(stdouts, sorted(contents))
    if check:
        problems += output_mismatches(stdouts, contents)
    at = {e["kind"]: e["at"] for e in requester_events(answer["events"], answer["requester"])}
    return run | {
        "wall_s": round(wall, 3),
        "events_s": round(at["completed"] - at["created"], 3),
        **run_figures(answer),
        "problems": problems[:PROBLEMS_SHOWN],
        "problem_count": len(problems),
    }


def measure_size(
    nodes: int, args: argparse.Namespace, inputs: Path, contents: Mapping[str, bytes]
) -> dict[str, Any]:
    """Start ``nodes`` nodes, add the inputs, run the job ``--repeat`` times."""
    sharding = Sharding(glob_pattern=GLOB, batch_size=args.batch)
    spec = JobSpec(image=IMAGE, command=["sh", "-c", args.work], sharding=sharding)
    with bench_cluster(nodes, slots=args.slots) as cluster:
        settle(args.settle)
        cid = add_inputs(cluster.state.nodes[0].api, inputs)
        say(f"added {len(contents)} files to node-0 as {cid}")
        spec = msgspec.structs.replace(spec, inputs=[InputSource(cid=cid, path=INPUTS_ROOT)])
        runs = []
        for i in range(args.repeat):
            run = run_once(cluster, spec, contents, check=args.work == DEFAULT_WORK)
            runs.append(run)
            said = (
                f"{run['wall_s']:.2f}s, {run['shards']} shards on {run['nodes_used']} node(s),"
                f" {run['problem_count']} problem(s)"
                if "wall_s" in run
                else f"{run['state']}: {run['reason']}"
            )
            say(f"{nodes} node(s), run {i + 1}/{args.repeat}: {said}")
        ready_s = cluster.ready_s
    done = [r for r in runs if "wall_s" in r]
    return {
        "nodes": nodes,
        "ready_s": round(ready_s or 0.0, 2),
        "cid": cid,
        "completed": len(done),
        "wall_s": summarize([r["wall_s"] for r in done], digits=3) if done else None,
        "shards": max((r["shards"] for r in done), default=None),
        "nodes_used": sorted({r["nodes_used"] for r in done}),
        "run_s_sum_median": summarize([r["run_s_sum"] for r in done], 2)["median"]
        if done
        else None,
        "runs": runs,
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _text(r: dict[str, Any]) -> str:
    header = (
        f"{'nodes':>5} {'shards':>6} {'runs ok':>7} {'wall p50':>9} {'min':>7} {'max':>7}"
        f" {'nodes used':>10} {'run s (sum)':>11} {'checks':>8}"
    )
    lines = [
        f"{r['files']} files of {r['file_kb']} KiB, {r['batch']} per shard, {r['repeat']} run(s)"
        f" per size (times in s), work: {r['work']}",
        header,
    ]
    problems = []
    for s in r["sizes"]:
        if "error" in s:
            lines.append(f"{s['nodes']:>5} could not run: {s['error']}")
            continue
        wall = s["wall_s"] or {}
        bad = sum(run.get("problem_count", 0) for run in s["runs"])
        lines.append(
            f"{s['nodes']:>5} {s['shards']!s:>6} {s['completed']:>3}/{len(s['runs']):<3}"
            f" {_seconds(wall.get('median')):>9} {_seconds(wall.get('min')):>7}"
            f" {_seconds(wall.get('max')):>7} {','.join(map(str, s['nodes_used'])) or '-':>10}"
            f" {s['run_s_sum_median']!s:>11} {'ok' if not bad else f'{bad} bad':>8}"
        )
        for run in s["runs"]:
            if "reason" in run:
                problems.append(
                    f"{s['nodes']} node(s): job {run['job_id']} {run['state']}: {run['reason']}"
                )
            problems += [
                f"{s['nodes']} node(s): job {run['job_id']}: {p}" for p in run.get("problems", [])
            ]
    if r["speedup"]:
        up = r["speedup"]
        lines.append(
            f"speedup of {up['to_nodes']} nodes over {up['from_nodes']} (median wall):"
            f" {up['median_wall']:g}x"
        )
    lines += [f"PROBLEM: {p}" for p in problems]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``devstack bench shards``."""
    load = os.getloadavg()[0]
    sizes = []
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        contents = write_inputs(inputs, args.files, args.file_kb * 1024)
        for nodes in args.nodes:
            try:
                sizes.append(measure_size(nodes, args, inputs, contents))
            except (ClusterError, NodeApiError, TimeoutError) as exc:  # the next size may do
                say(f"{nodes} node(s): {exc}")
                sizes.append({"nodes": nodes, "error": str(exc), "wall_s": None, "runs": []})
    result = {
        "bench": "shards",
        "files": args.files,
        "file_kb": args.file_kb,
        "batch": args.batch,
        "repeat": args.repeat,
        "work": args.work,
        "sizes": sizes,
        "speedup": speedup(sizes),
    }
    report(result, args.json, _text, load)
    runs = [run for s in sizes for run in s["runs"]]
    bad = any("error" in s for s in sizes) or any(r["state"] != "completed" for r in runs)
    return 1 if bad or any(r.get("problem_count") for r in runs) else 0
