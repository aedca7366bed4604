"""Start an app under `spaces`' ZeroGPU code, as a Space would run it:

    SPACES_ZERO_GPU=true SPACES_ZERO_DEVICE_API_URL=http://127.0.0.1:PORT \\
        python tests/zerogpu/start_app.py [--cpu] app.py [app args]

`spaces` is imported first, in zero mode: it patches torch in this (the main) thread, wraps every
`@spaces.GPU` function, forks a worker per call (or reuses an idle one), pickles arguments and
results across, and calls the device API. All of that is its own code. With `--cpu` (a machine
without a GPU) two steps of a worker's start-up are replaced, since both need CUDA:
`spaces.zero.torch.init` (the original points CUDA_VISIBLE_DEVICES at the GPU it was given and
initialises CUDA) only sets the variable, and `spaces.zero.torch.move` (the original copies the
model's tensors, which the main process only holds as CUDA placeholders, onto the GPU) gives each
placeholder its CPU tensor back. An app started with SAM3_DEVICE=cpu makes no placeholders at all.

ZG_HARDWARE=blackwell gives spaces its own entry for the hardware ZeroGPU runs on today (half an
RTX Pro 6000 Blackwell: every duration asked counts 1.5 times against the quota); without it spaces
reads the GPU from the driver and, finding none, takes its default (H200, factor 1).
"""

from __future__ import annotations

import os
import runpy
import sys

if os.environ.get("SPACES_ZERO_GPU", "").lower() != "true" or not os.environ.get("SPACES_ZERO_DEVICE_API_URL"):
    sys.exit("set SPACES_ZERO_GPU=true and SPACES_ZERO_DEVICE_API_URL first")

import spaces  # noqa: E402,F401  (zero mode: patches torch now, in this thread)
import spaces.zero.torch as zero_torch  # noqa: E402

if os.environ.get("ZG_HARDWARE", "").lower() == "blackwell":
    import json
    from importlib.resources import files

    import spaces.zero.config as zero_config

    _entries = json.loads(files("spaces.zero").joinpath("configs.json").read_text())
    _blackwell = next(c for c in _entries if "RTX PRO 6000" in c["model"])
    zero_config.get_config = lambda: _blackwell


def _init_on_cpu(nvidia_uuid: str) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = nvidia_uuid


def _move_on_cpu(callback=None) -> None:
    from spaces.zero.torch import patching

    for placeholder, tensor in list(patching.cuda_aliases.items()):
        if tensor is not None:
            placeholder.data = tensor
    if patching.tensor_packs:
        raise RuntimeError("tensors were packed to disk at launch: moving them needs a GPU (run without --cpu)")


args = sys.argv[1:]
if args and args[0] == "--cpu":
    zero_torch.init, zero_torch.move = _init_on_cpu, _move_on_cpu
    args = args[1:]
app = os.path.abspath(args[0])
sys.argv = args
sys.path.insert(0, os.path.dirname(app))
os.chdir(os.path.dirname(app))
runpy.run_path(app, run_name="__main__")
