"""The web app's work, apart from its layout (app.py), split by what each part owns.

The main process owns every piece of state; the model runs only in the GPU steps, which take
plain values and return plain values, so that on Hugging Face ZeroGPU (each step in a forked
worker process, nothing it changes coming back) the app behaves as it does on a workstation GPU
or on the CPU:

    model.py       the one model: loaded eagerly in the main thread; `ModelRef` names it to a step
    gpu.py         the GPU steps (detect-and-replay, run) and the requests they take
    workspaces.py  one private folder and the choices made, per visitor; sweeper; run folders
    uploads.py     an upload checked against the limits, and the visitor's own link to it
    previews.py    frames drawn for the page, object rows, preview pixels -> video pixels
    clicks.py      a click on the frame -> an `Edit`, and what the model made of it, in words
    runs.py        a run folder as the record: stop requests, outputs, the plan of GPU calls
    live.py        a run going on in a thread of its own, followed by the page (again after a reload)
    review.py      a run at a glance: its timeline (growing as frames come), the objects table after it
    service.py     the visitor's steps, from these parts
"""
