"""The batch's Ray side: the driver's code on every node, a check of every node before any work,
workers placed per node, and a scheduler that outlives lost workers and lost nodes.

- **Code.** `connect` ships this package to the cluster with the job (`runtime_env` py_modules),
  so workers import the code the driver runs, whatever the nodes have installed. `check_nodes`
  runs one small task on each node that will hold workers: it compares the code that node
  imports with the driver's (a fingerprint of the package's sources) and checks that the node
  sees the input videos, the model folder and the output folder (a probe file the driver wrote).
  Anything wrong is one sentence, before any model is loaded.
- **Placement.** One worker per GPU (or `gpus_per_task` of one); without GPUs, workers sized per
  node: half as many as the node has CPUs, two CPUs each (torch runs one thread per CPU Ray
  gives the actor), spread over the nodes in turn.
- **Scheduling.** Each video is one streaming call on a free worker: it says where it runs, then
  its frames done (at most every half second), then its report. When a worker dies (its node
  left the cluster, the process was killed), its video goes back to the front of the queue and
  is redone from scratch on the next free worker, up to `MAX_ATTEMPTS` times, and a replacement
  worker is asked for (Ray places it when there is room). Every retry's reason stays in the
  video's report.
"""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .batchjob import VideoReport
from .errors import BadRequestError
from .version import __version__

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_ATTEMPTS = 3  # runs of one video cut off by lost workers before it is reported failed
PROGRESS_EVERY_S = 0.5


def code_fingerprint(package_dir: str = PACKAGE_DIR) -> str:
    """A short hash of the package's Python sources (names and bytes): equal code, equal hash."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, package_dir).replace(os.sep, "/").encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:12]


def connect(address: str | None, ship_code: bool) -> None:
    """Start or join Ray; with `ship_code` the job carries this package to every worker."""
    import ray

    if ray.is_initialized():  # the caller's own connection: its runtime_env stands, the node check still runs
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"  # "local": our own, never a stale one
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        try:
            ray.init(address=target, runtime_env={"py_modules": [PACKAGE_DIR]} if ship_code else None, **options)
        except ValueError:  # a submitted job that sets py_modules itself: it keeps them (the node check guards)
            ray.init(address=target, **options)
    except ConnectionError as err:
        raise BadRequestError(f"Could not reach the Ray cluster at '{target}' ({_first_line(err)}). Check --address "
                              "or RAY_ADDRESS (ray://HOST:10001 for Ray Client, HOST:6379 on a node of the cluster), "
                              "or leave both out to run on this machine.") from None


# -- the nodes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    id: str
    ip: str
    cpus: float
    gpus: float

    @property
    def name(self) -> str:
        return f"{self.ip} ({self.id[:8]})"


def alive_nodes() -> list[Node]:
    import ray

    return [Node(n["NodeID"], n.get("NodeManagerAddress", "?"), float(n["Resources"].get("CPU", 0)),
                 float(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n.get("Alive")]


def node_facts(paths: list[str], probe: str, out_root: str) -> dict:
    """Run on a node: the code it imports and what it sees of the shared storage."""
    import ray

    return {"version": __version__, "code": code_fingerprint(),
            "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
            "missing": [p for p in paths if not os.path.exists(p)],
            "sees_out": os.path.exists(probe), "writable": os.access(out_root, os.W_OK)}


def node_problem(node: Node, facts: dict, code: str, version: str) -> str | None:
    """One sentence on what is wrong with a node for this batch, or None."""
    if facts["code"] != code:
        return (f"Node {node.name} runs sam3-video {facts['version']} (code {facts['code']}), not the driver's "
                f"{version} (code {code}). Install the same version on every node, or let the batch ship "
                "the driver's code (leave out --no-ship-code and let the batch start its own Ray connection).")
    if facts["missing"]:
        return (f"Node {node.name} cannot see {len(facts['missing'])} of the batch's inputs (first: "
                f"{facts['missing'][0]}). Every node must see the videos and the model folder at the same "
                "paths: put them on storage all nodes mount (NFS, a shared volume, a mounted bucket).")
    if not facts["sees_out"] or not facts["writable"]:
        return (f"Node {node.name} does not share the output folder with this machine (a file written here is "
                f"{'not there' if not facts['sees_out'] else 'there, but the folder is read-only'}). Give --out a "
                "folder on storage every node mounts at the same path, writable by the workers.")
    return None


def check_nodes(nodes: list[Node], paths: list[str], out_root: str, timeout_s: float = 600) -> None:
    """Raise one sentence if any node that will hold workers runs other code or misses the storage."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = os.path.join(out_root, f".sam3-node-check-{uuid.uuid4().hex}")
    with open(probe, "w") as f:
        f.write("written by the batch's driver; every node must see it\n")
    try:
        task = ray.remote(num_cpus=0, max_retries=0)(node_facts)
        refs = {task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n.id, soft=False))
                .remote(paths, probe, out_root): n for n in nodes}
        code = code_fingerprint()
        for ref, node in refs.items():
            try:
                facts = ray.get(ref, timeout=timeout_s)
            except ray.exceptions.RayError as err:
                raise BadRequestError(
                    f"Node {node.name} could not run the batch's code ({_first_line(err)}). Let the batch ship "
                    "the code (the default), or install this package and its requirements on every node."
                ) from None
            problem = node_problem(node, facts, code, __version__)
            if problem:
                raise BadRequestError(problem)
    finally:
        os.remove(probe)


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "cause", None) or err).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(" ")]
    return (lines[-1] if lines else type(err).__name__)[:300]


# -- where workers go ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One worker's resources, and the node it is meant for (None: wherever Ray finds room)."""

    cpus: float
    gpus: float = 0.0
    node: str | None = None


def plan_workers(nodes: list[Node], videos: int, use_gpus: bool, gpus_per_task: float = 1.0,
                 workers: int | None = None) -> list[Slot]:
    """The workers to start: never more than the videos, nor than `workers` when given."""
    if use_gpus:
        count = workers or max(1, int(sum(n.gpus for n in nodes) // gpus_per_task))
        return [Slot(1, gpus_per_task)] * min(count, videos)
    per_node = []
    for node in (n for n in nodes if n.cpus >= 1):
        count = max(1, int(node.cpus) // 2)
        per_node.append((node, count, max(1, min(2, int(node.cpus) // count))))
    slots = [Slot(size, 0.0, node.id) for k in range(max((c for _, c, _ in per_node), default=0))
             for node, count, size in per_node if k < count]  # round the nodes: spread before packing
    if workers and workers > len(slots) and slots:  # more than the cores suggest: one CPU each, anywhere
        slots += [Slot(1)] * (workers - len(slots))
    return slots[:min(workers or len(slots), videos)]


def writer_cores(nodes: list[Node], slots: list[Slot]) -> int:
    """The cores each worker's file writers may take (lanes.py): the hosting nodes' CPUs the workers
    do not reserve, shared out, and one at least, so that workers on one node do not each start a
    writer process a core of the whole node."""
    hosts = {s.node for s in slots if s.node}
    cpus = sum(n.cpus for n in nodes if not hosts or n.id in hosts)
    return max(1, int((cpus - sum(s.cpus for s in slots)) // max(1, len(slots))))


# -- the worker ----------------------------------------------------------------------------------
class Segmenter:
    """Holds one loaded model; segments the videos the scheduler hands it, one at a time."""

    def __init__(self, model: str, backend: str, device: str, dtype: str, writer_cores: int | None = None):
        from .backends import load_backend
        from .errors import Sam3VideoError

        self.backend, self.load_error, self.writer_cores = None, None, writer_cores
        try:
            self.backend = load_backend(model, backend, device, dtype)
        except Sam3VideoError as err:  # reported with every video instead of killing the actor
            self.load_error = str(err)

    def ready(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def segment(self, job, outputs: list[str]) -> Iterator[tuple]:
        """Stream ("start", node, worker), ("frames", done, expected)..., then ("report", VideoReport)."""
        import ray

        node, worker = ray.get_runtime_context().get_node_id(), f"{socket.gethostname()}:{os.getpid()}"
        yield ("start", node, worker)
        events: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: events.put(("report", self._segment(job, outputs, events))),
                         daemon=True).start()
        last = 0.0
        while True:
            event = events.get()
            if event[0] == "report":
                event[1].node, event[1].worker = node, worker
                yield event
                return
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                yield event

    def _segment(self, job, outputs: list[str], events: queue.Queue):
        from .errors import Sam3VideoError
        from .pipeline import run

        if self.load_error:
            return VideoReport(job.video, job.out_dir, "failed", error=self.load_error)
        import shutil

        started = time.perf_counter()
        shutil.rmtree(job.out_dir, ignore_errors=True)  # a cut-off run is redone from scratch
        try:
            record = run(job.video, job.options(), job.out_dir, backend=self.backend, outputs=outputs,
                         on_progress=lambda p: events.put(("frames", p.done, p.total)),
                         writer_cores=self.writer_cores)
        except Sam3VideoError as err:
            return VideoReport(job.video, job.out_dir, "failed", seconds=time.perf_counter() - started, error=str(err))
        except Exception as err:  # one bad video never stops the batch
            return VideoReport(job.video, job.out_dir, "failed", seconds=time.perf_counter() - started,
                               error=f"{type(err).__name__}: {err}")
        return VideoReport.of(job.video, record)


# -- the scheduler -------------------------------------------------------------------------------
@dataclass
class ClusterProgress:
    """Where the batch is: videos ended, frames done across the cluster, what runs where."""

    videos_done: int
    videos: int
    frames_done: int
    running: dict[int, tuple[str, int]] = field(default_factory=dict)  # job index -> (node id, frames done)
    report: object | None = None  # the VideoReport of the video that just ended, if one did


@dataclass
class _Worker:
    actor: Any  # a Ray actor handle of Segmenter
    slot: Slot


class Scheduler:
    """Hands videos to free workers; redoes a video whose worker was lost; replaces lost workers."""

    def __init__(self, jobs: list, outputs: list[str], spawn: Callable[[Slot], object],
                 on_progress: Callable[[ClusterProgress], None] | None = None, worker_wait_s: float | None = None):
        self.jobs, self.outputs, self.spawn, self.on_progress = jobs, outputs, spawn, on_progress
        self.worker_wait_s = worker_wait_s if worker_wait_s is not None else float(
            os.environ.get("SAM3_BATCH_WORKER_WAIT_S", 900))
        self.workers: list[_Worker] = []

    def run(self, todo: list[int], slots: list[Slot], reports: dict) -> dict:
        """Fill `reports` (job index -> VideoReport) for every index in `todo`; return it."""
        import ray

        waiting, frames = deque(todo), {k: 0 for k in todo}
        retries: dict[int, list[str]] = {k: [] for k in todo}  # why each attempt was cut off
        where: dict[int, str] = {}  # job index -> the node it runs on
        starting = dict(self._start(slot) for slot in slots)  # ready call -> worker
        idle: list[_Worker] = []
        running: dict = {}  # streaming call -> (job index, worker)
        start_error, stalled_since = None, None

        def report_progress(report=None):
            if self.on_progress:
                busy = [k for k, _ in running.values() if k not in reports]  # a call ends just after its report
                done = sum(r.frames for r in reports.values()) + sum(frames[k] for k in busy)
                self.on_progress(ClusterProgress(len(reports), len(self.jobs), done,
                                                 {k: (where.get(k, ""), frames[k]) for k in busy}, report))

        def end(k: int, report) -> None:
            report.retries = retries[k]
            reports[k] = report
            report_progress(report)

        try:
            while waiting or running:
                while waiting and idle:
                    worker, k = idle.pop(0), waiting.popleft()
                    frames[k] = 0
                    running[worker.actor.segment.options(num_returns="streaming").remote(self.jobs[k], self.outputs)] \
                        = (k, worker)
                stalled_since = None if running else stalled_since or time.monotonic()
                if not running and not starting:
                    why = start_error or "every worker was lost and none could be started again"
                    for k in waiting:
                        end(k, VideoReport(self.jobs[k].video, self.jobs[k].out_dir, "failed",
                                           error=f"No worker could run it: {why}."))
                    break
                ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=5.0)
                if not ready:
                    if stalled_since is not None and time.monotonic() - stalled_since > self.worker_wait_s:
                        start_error = (f"no worker started within {self.worker_wait_s:.0f} s (does the cluster have "
                                       "the CPUs or GPUs each worker asks for?)")
                        starting.clear()
                    continue
                call = ready[0]
                if call in starting:
                    worker = starting.pop(call)
                    try:
                        ray.get(call)
                        idle.append(worker)
                    except ray.exceptions.RayError as err:
                        start_error = f"a worker failed to start ({_first_line(err)})"
                        self._drop(worker)
                    continue
                k, worker = running[call]
                try:
                    event = ray.get(next(call))
                except StopIteration:
                    del running[call]
                    idle.append(worker)
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as err:
                    del running[call]
                    self._drop(worker)
                    starting.update([self._start(Slot(worker.slot.cpus, worker.slot.gpus))])  # anywhere with room
                    if k in reports:  # lost after its report: the video is done
                        continue
                    retries[k].append(_lost(where.get(k, ""), err))
                    if len(retries[k]) < MAX_ATTEMPTS:
                        waiting.appendleft(k)
                    else:
                        job, last = self.jobs[k], retries[k][-1]
                        end(k, VideoReport(job.video, job.out_dir, "failed",
                                           error=f"Its worker was lost {MAX_ATTEMPTS} times; the last: {last}."))
                    report_progress()
                    continue
                except ray.exceptions.RayTaskError as err:  # a bug of ours in the worker: the video fails
                    del running[call]
                    idle.append(worker)
                    job = self.jobs[k]
                    end(k, VideoReport(job.video, job.out_dir, "failed", error=_first_line(err)))
                    continue
                if event[0] == "start":
                    where[k] = event[1]
                elif event[0] == "frames":
                    frames[k] = event[1]
                    report_progress()
                else:
                    end(k, event[1])
        finally:
            for worker in self.workers:
                self._drop(worker)
        return reports

    def _start(self, slot: Slot) -> tuple[object, _Worker]:
        worker = _Worker(self.spawn(slot), slot)
        self.workers.append(worker)
        return worker.actor.ready.remote(), worker

    @staticmethod
    def _drop(worker: _Worker) -> None:
        import ray

        try:
            ray.kill(worker.actor, no_restart=True)
        except Exception:  # already gone
            pass


def _lost(node_id: str, err: BaseException) -> str:
    """Why a video's attempt ended: its worker's node (IP and id, from one look at the cluster),
    the error, and whether that node has left the cluster."""
    import ray

    node = next((n for n in ray.nodes() if n["NodeID"] == node_id), None)
    name = Node(node_id, node.get("NodeManagerAddress", "?"), 0, 0).name if node else node_id[:8] or "?"
    gone = bool(node_id) and not (node and node.get("Alive"))
    return f"its worker on node {name} was lost ({type(err).__name__}{': node gone' if gone else ''})"
