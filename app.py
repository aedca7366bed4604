"""sam3-video web app: layout and wiring only; the work is done by sam3_video.jobs / pipeline.

    python app.py [--host 127.0.0.1] [--port 7860]      (SAM3_MODEL=LOCAL_DIR for a local copy)
"""

from __future__ import annotations

import argparse
import os
import tempfile

import gradio as gr

from sam3_video.errors import Sam3VideoError
from sam3_video.jobs import segment_job
from sam3_video.types import DIRECTIONS

WORK_DIR = tempfile.mkdtemp(prefix="sam3-video-app-")


def segment_video(video, prompts, start_frame, direction, max_frames, threshold, progress=gr.Progress()):
    if not video:
        raise gr.Error("Upload a video first.")
    try:
        return segment_job(
            video, prompts or "", start_frame or 0, direction, max_frames or None, threshold or None, WORK_DIR,
            on_progress=lambda p: progress((p.done, p.total), unit="frames"),
        )
    except Sam3VideoError as err:
        raise gr.Error(str(err)) from None


with gr.Blocks(title="sam3-video") as demo:
    gr.Markdown("# sam3-video\nFind and track every instance of what you type, through a whole video, with SAM3.")
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Video", sources=["upload"])
            prompts = gr.Textbox(label="What to find (comma-separated)", placeholder="car, person")
            with gr.Row():
                start_frame = gr.Number(label="Start frame", value=0, precision=0, minimum=0)
                direction = gr.Radio(list(DIRECTIONS), value="forward", label="Direction")
            with gr.Row():
                max_frames = gr.Number(label="Frame limit per direction (empty: all)", value=None, precision=0)
                threshold = gr.Number(label="Detection threshold 0-1 (empty: model's)", value=None)
            run_button = gr.Button("Segment", variant="primary")
        with gr.Column():
            overlay = gr.Video(label="Overlay", interactive=False)
            results = gr.File(label="Annotations (COCO, YouTube-VIS, MOT, MOTS, labelme, DAVIS)")
            summary = gr.JSON(label="Summary")
    run_button.click(
        segment_video, [video, prompts, start_frame, direction, max_frames, threshold], [overlay, results, summary],
        api_name="segment_video",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="sam3-video web app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    demo.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port, allowed_paths=[WORK_DIR])
