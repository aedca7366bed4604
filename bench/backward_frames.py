"""Why backward frames blinked: every other backward frame empty at threshold 0, never a forward one.

    python bench/backward_frames.py CLIP MODEL_DIR "PHRASES" START [nokernel]

Runs "both" from START (40 frames each way, threshold 0) three ways and counts the objects on each
frame: our engine; transformers called directly (its own session and iterator); our engine with
transformers' "suppress the most recently occluded object" rule mirrored for the reverse
direction. `nokernel` turns SAM3's mask clean-up off (transformers' own behaviour without the hub
kernel, which was ours before backends/postprocess.py). Results: bench/results/backward-frames-cpu.md.
"""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import av  # noqa: E402
import torch  # noqa: E402
from transformers import Sam3VideoModel, Sam3VideoProcessor  # noqa: E402
from transformers.models.sam3_video import modeling_sam3_video as M  # noqa: E402

from sam3_video.backends import load_backend  # noqa: E402
from sam3_video.session import VideoSession  # noqa: E402

clip, model_dir = sys.argv[1], sys.argv[2]
prompts = sys.argv[3] if len(sys.argv) > 3 else "person, window"
start = int(sys.argv[4]) if len(sys.argv) > 4 else 60
b = load_backend(model_dir, "transformers", "cpu", "float32")
if len(sys.argv) > 5 and sys.argv[5] == "nokernel":
    M.cv_utils_kernel = False  # transformers without the hub kernel and without ours: no NMS, no hole filling

def ours():
    with VideoSession(clip, b) as s:
        s.detect(start, prompts, 0.0)
        return {r.frame_index: len(r) for r in s.propagate("both", max_frames=40)}

def direct():
    model = Sam3VideoModel.from_pretrained(model_dir).eval(); proc = Sam3VideoProcessor.from_pretrained(model_dir)
    model.score_threshold_detection = model.new_det_thresh = 0.0
    with av.open(clip) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    st = proc.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    proc.add_text_prompt(st, [p.strip() for p in prompts.split(",")])
    out = {}
    for rev in (False, True):
        for o in model.propagate_in_video_iterator(st, start_frame_idx=start, max_frame_num_to_track=39, reverse=rev):
            out[o.frame_idx] = len(proc.postprocess_outputs(st, o)["object_ids"])
    return out

def show(name, counts):
    fw = [counts[i] for i in sorted(counts) if i >= start]
    bw = [counts[i] for i in sorted(counts, reverse=True) if i < start]
    print(name, "forward", fw[:25]); print(name, "backward", bw[:25])
    print(name, "empty frames fwd", sum(c == 0 for c in fw), "/", len(fw), "bwd", sum(c == 0 for c in bw), "/", len(bw))

show("ours", ours())
show("direct", direct())
orig = M.Sam3VideoModel._get_objects_to_suppress_based_on_most_recently_occluded
def fixed(self, masks, last, obj_ids, reverse=False):
    if not reverse:
        return orig(self, masks, last, obj_ids, reverse)
    big = 10**9  # the forward rule on mirrored frame indices: never occluded (-1) stays the least recent
    flipped = torch.where(last < 0, last, torch.where(last >= 100000, torch.full_like(last, big + 1), big - last))
    return orig(self, masks, flipped, obj_ids, False)
M.Sam3VideoModel._get_objects_to_suppress_based_on_most_recently_occluded = fixed
show("ours, sentinel mirrored", ours())
