"""The batch on a multi-node Ray cluster on one machine (Ray's own `cluster_utils.Cluster`: a head
with no CPUs and two worker nodes, each a real raylet), with the small SAM3: videos spread over
both nodes, a node removed while a video runs on it and that video redone on the other, every
output equal to a single-video run; a node running other code stops the batch with a sentence."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from sam3_video import cluster
from sam3_video.batch import collect_jobs, run_batch, summary_table
from sam3_video.errors import BadRequestError
from sam3_video.pipeline import run
from sam3_video.results import read_results

OUTPUTS = ["overlay", "coco", "mot"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head holds no worker
    workers = [nodes.add_node(num_cpus=2) for _ in range(2)]
    nodes.wait_for_nodes()
    yield nodes, workers
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture()
def clips(media, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(4):
        shutil.copy(os.path.join(media, "carphone_pristine.mp4"), folder / f"clip{k}.mp4")
    return folder


def test_a_node_lost_mid_video_costs_only_that_video_redone(ray_cluster, clips, test_model_dir, backend, tmp_path):
    import ray

    nodes, workers = ray_cluster
    out = tmp_path / "out"
    jobs = collect_jobs(str(clips), "person", str(out), max_frames=30, threshold=0.45)  # few objects: fast
    ended_on: dict[str, set[int]] = {}  # node id -> videos it completed
    seen, removed = [], {}

    def on_progress(state: cluster.ClusterProgress) -> None:
        seen.append(state)
        if state.report is not None and state.report.status == "complete":
            ended_on.setdefault(state.report.node, set()).add(jobs.index(_job(jobs, state.report.video)))
        for k, (node_id, frames) in state.running.items():
            if not removed and frames >= 1 and ended_on.get(node_id):  # its second video, under way
                removed.update(video=k, node=node_id, frames=frames)
                nodes.remove_node(next(w for w in workers if w.node_id == node_id))

    try:
        reports = run_batch(jobs, str(out), test_model_dir, device="cpu", outputs=OUTPUTS, address=nodes.address,
                            progress=on_progress)
    finally:
        ray.shutdown()

    assert removed, "no video was seen running on a node that had finished one"
    assert [r.status for r in reports] == ["complete"] * 4
    lost = reports[removed["video"]]
    assert len(lost.retries) == 1 and "was lost" in lost.retries[0] and removed["node"][:8] in lost.retries[0]
    assert lost.node != removed["node"]  # redone on the node that stayed
    assert all(not r.retries for k, r in enumerate(reports) if k != removed["video"])
    assert len({r.node for r in reports}) == 2  # the videos ended on both nodes
    assert "(1 redone after a lost worker)" in summary_table(reports)
    # frames across the cluster were reported while videos ran, and add up at the end
    assert any(s.running and s.frames_done > 0 for s in seen)
    assert seen[-1].videos_done == 4 and seen[-1].frames_done == 4 * 30
    for job in jobs:  # the same files a single-video run writes
        single = tmp_path / ("single-" + os.path.basename(job.out_dir))
        run(job.video, job.options(), single, backend=backend, outputs=OUTPUTS)
        ours, theirs = list(read_results(job.out_dir)), list(read_results(single))
        assert [r.frame_index for r in ours] == [r.frame_index for r in theirs] == list(range(30))
        for a, b in zip(ours, theirs):
            assert a.obj_ids.tolist() == b.obj_ids.tolist() and a.labels == b.labels
            np.testing.assert_array_equal(a.masks, b.masks)
        mot = os.path.join("annotations", "mot.txt")
        assert open(os.path.join(job.out_dir, mot)).read() == (single / mot).read_text()


def test_a_node_with_other_code_stops_the_batch_before_any_work(ray_cluster, clips, test_model_dir, tmp_path,
                                                                monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)  # Ray puts the driver's folder on the workers' path: not this repository
    nodes, _ = ray_cluster
    stale = tmp_path / "stale"
    shutil.copytree(cluster.PACKAGE_DIR, stale / "sam3_video", ignore=shutil.ignore_patterns("__pycache__"))
    init = stale / "sam3_video" / "version.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "0.0.0-old+'))
    out = tmp_path / "out"
    jobs = collect_jobs(str(clips), "person", str(out), max_frames=3)
    # the workers import another copy (as if each node had an older release installed)
    ray.init(address=nodes.address, runtime_env={"py_modules": [str(stale / "sam3_video")]},
             log_to_driver=False, configure_logging=False)
    try:
        with pytest.raises(BadRequestError, match=r"runs sam3-video 0\.0\.0-old\+.*not the driver's") as err:
            run_batch(jobs, str(out), test_model_dir, device="cpu", outputs=OUTPUTS)
    finally:
        ray.shutdown()
    assert "Install the same version on every node" in str(err.value)
    assert sorted(os.listdir(out)) == []  # nothing written, not even the probe file


def test_workers_are_placed_per_node_and_spread_over_the_nodes():
    head, a, b = (cluster.Node("h" * 56, "10.0.0.1", 0, 0), cluster.Node("a" * 56, "10.0.0.2", 2, 0),
                  cluster.Node("b" * 56, "10.0.0.3", 16, 0))
    slots = cluster.plan_workers([head, a, b], videos=100, use_gpus=False)
    assert [s.node for s in slots[:3]] == [a.id, b.id, b.id]  # one round over the nodes, then packing
    assert sum(s.node == a.id for s in slots) == 1 and sum(s.node == b.id for s in slots) == 8
    assert {s.cpus for s in slots} == {2}
    assert cluster.plan_workers([head, a, b], videos=2, use_gpus=False) == slots[:2]  # never more than the videos
    assert [s.node for s in cluster.plan_workers([head, a, b], videos=100, use_gpus=False, workers=2)] == [a.id, b.id]
    odd = cluster.plan_workers([cluster.Node("c" * 56, "10.0.0.4", 3, 0)], videos=9, use_gpus=False)
    assert [s.cpus for s in odd] == [2]  # one worker, two CPUs at most
    gpus = [cluster.Node("g" * 56, "10.0.0.5", 8, 4)]
    assert cluster.plan_workers(gpus, videos=100, use_gpus=True) == [cluster.Slot(1, 1.0)] * 4
    assert cluster.plan_workers(gpus, videos=100, use_gpus=True, gpus_per_task=0.5) == [cluster.Slot(1, 0.5)] * 8


def test_workers_on_one_node_share_its_spare_cores_for_their_writers():
    gpus = [cluster.Node("g" * 56, "10.0.0.5", 16, 4)]
    four = cluster.plan_workers(gpus, videos=100, use_gpus=True)
    assert cluster.writer_cores(gpus, four) == 3  # 16 CPUs, 4 reserved by the workers, 12 / 4
    small = [cluster.Node("s" * 56, "10.0.0.6", 4, 4)]
    assert cluster.writer_cores(small, cluster.plan_workers(small, videos=100, use_gpus=True)) == 1  # never 0
    head, b = cluster.Node("h" * 56, "10.0.0.1", 0, 0), cluster.Node("b" * 56, "10.0.0.3", 16, 0)
    cpu = cluster.plan_workers([head, b], videos=100, use_gpus=False)
    assert cluster.writer_cores([head, b], cpu) == 1  # the model takes every core: one writer process each


def test_what_a_node_cannot_see_is_one_sentence():
    node = cluster.Node("d" * 56, "10.0.0.9", 2, 0)
    code = cluster.code_fingerprint()
    fine = {"version": "0.1.0", "code": code, "missing": [], "sees_out": True, "writable": True}
    assert cluster.node_problem(node, fine, code, "0.1.0") is None
    missing = cluster.node_problem(node, {**fine, "missing": ["/data/a.mp4", "/data/b.mp4"]}, code, "0.1.0")
    assert missing.startswith("Node 10.0.0.9 (dddddddd) cannot see 2 of the batch's inputs (first: /data/a.mp4)")
    assert "same paths" in missing
    apart = cluster.node_problem(node, {**fine, "sees_out": False}, code, "0.1.0")
    assert "does not share the output folder" in apart and "not there" in apart
    read_only = cluster.node_problem(node, {**fine, "writable": False}, code, "0.1.0")
    assert "read-only" in read_only


def _job(jobs, video):
    return next(j for j in jobs if j.video == video)
