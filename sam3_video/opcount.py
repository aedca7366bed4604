"""Count the torch ops and the host-device syncs a piece of code dispatches, by stage.

On a GPU every dispatched op is a kernel launch issued from Python, and every sync stalls the
host until the GPU has caught up; both are overhead that a CPU run can count exactly, although it
cannot time them. `OpCounter` is a `TorchDispatchMode`: every aten op that reaches the dispatcher
(composite ops counted once, as the op they decompose into) is counted under the innermost stage
open at the time (`counter.stage(name)`, or `counter.wrap(obj, attr, name)` around a function).

A *sync* is an op or call that, on CUDA, waits for the device (what `torch.cuda.set_sync_debug_mode`
reports), recognised on the CPU by what it is:

- reading a value on the host: `item`, `is_nonzero` (`bool(t)`, `if t:`), `_local_scalar_dense`,
  `Tensor.tolist()`, `Tensor.cpu()`, `Tensor.to("cpu")` (the string: on this CPU run the model's
  own device is the CPU too, so `.to(device)` cannot be told apart and is not counted);
- ops whose output size depends on the data: `nonzero` (and `torch.where(cond)`, `argwhere`),
  `unique`, `masked_select`, `repeat_interleave` by a tensor of repeats without `output_size`, and indexing or
  index-assigning with a boolean mask (`t[mask]`, `t[mask] = v`: a `nonzero` inside the kernel);
- a blocking upload: `torch.tensor(data, device=...)` / `torch.as_tensor(data, device=...)` from
  host data (a copy from pageable memory that `copy_` follows with a stream synchronize).

Host-side reads of tensors that are on the CPU anyway would not sync on a GPU either; in the code
measured here every tensor read lives on the model's device, so they count. `.to("cpu")` counts
only for the string: the measured code must name its own device with a `torch.device` object
(bench/ops.py does), or its `.to(device)` would count as host copies.
"""

from __future__ import annotations

import contextlib
import os
import functools
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_VALUE_READS = {"item", "is_nonzero", "_local_scalar_dense", "equal"}
_DATA_SIZED = {"nonzero", "nonzero_numpy", "argwhere", "_unique", "_unique2", "unique_dim", "unique_consecutive",
               "unique_dim_consecutive", "masked_select"}
_INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}


def _is_sync(func, args, kwargs) -> str | None:
    name = func._overloadpacket.__name__
    if name in _VALUE_READS:
        return name
    if name in _DATA_SIZED:
        return name
    if name == "where" and len(args) == 1:
        return "where(cond)"
    if (name == "repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor")
            and (kwargs or {}).get("output_size") is None):
        return name
    if name in _INDEXING and len(args) > 1:
        for index in args[1] or ():
            if isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8):
                return f"{name}[bool]"
    return None


class OpCounter(TorchDispatchMode):
    """Counts ops and syncs per stage while active (`with OpCounter() as c:`).

    `ops`, `syncs`: Counter stage -> count; `sync_sites`: Counter (stage, kind) -> count.
    """

    def __init__(self, where: bool = False):
        super().__init__()
        self.where = where  # also record the source line of each sync (slow): `sync_lines`
        self.sync_lines: Counter = Counter()
        self.ops: Counter = Counter()
        self.syncs: Counter = Counter()
        self.sync_sites: Counter = Counter()
        self._stages = ["other"]
        self._patches: list = []
        self._depth = 0  # > 0 while a Python-level sync is running its own ops

    # -- stages ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str):
        self._stages.append(name)
        try:
            yield
        finally:
            self._stages.pop()

    def wrap(self, owner, attr: str, name: str) -> None:
        """Count calls of `owner.attr` (a function, method or module global) under stage `name`
        until the counter exits."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def staged(*args, **kwargs):
            with self.stage(name):
                return original(*args, **kwargs)

        self._patch(owner, attr, staged)

    def _patch(self, owner, attr: str, replacement) -> None:
        own = vars(owner).get(attr, None) if hasattr(owner, "__dict__") else getattr(owner, attr)
        self._patches.append((owner, attr, own))
        setattr(owner, attr, replacement)

    def reset(self) -> None:
        self.ops.clear()
        self.syncs.clear()
        self.sync_sites.clear()

    def _sync(self, kind: str) -> None:
        stage = self._stages[-1]
        self.syncs[stage] += 1
        self.sync_sites[(stage, kind)] += 1
        if self.where:
            import traceback

            frames = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename
                      and not f.filename.endswith("opcount.py")]
            if frames:
                f = frames[-1]
                self.sync_lines[(kind, f"{os.path.basename(f.filename)}:{f.lineno} {f.name}")] += 1

    # -- dispatch --------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self._depth == 0:
            self.ops[self._stages[-1]] += 1
            kind = _is_sync(func, args, kwargs)
            if kind:
                self._sync(kind)
        return func(*args, **(kwargs or {}))

    # -- Python-level host reads and uploads --------------------------------------------------
    def _host_read(self, kind: str, original):
        counter = self

        @functools.wraps(original)
        def read(tensor, *args, **kwargs):
            if kind == "to('cpu')" and "cpu" not in (*args, kwargs.get("device")):  # the literal only
                return original(tensor, *args, **kwargs)
            counter._sync(kind)
            counter._depth += 1
            try:
                return original(tensor, *args, **kwargs)
            finally:
                counter._depth -= 1

        return read

    def _upload(self, original):
        counter = self

        @functools.wraps(original)
        def upload(data, *args, **kwargs):
            if kwargs.get("device") is not None and not isinstance(data, torch.Tensor):
                counter._sync("upload")
            return original(data, *args, **kwargs)

        return upload

    def __enter__(self):
        for attr, kind in (("tolist", "tolist"), ("cpu", "cpu"), ("to", "to('cpu')")):
            self._patch(torch.Tensor, attr, self._host_read(kind, getattr(torch.Tensor, attr)))
        for attr in ("tensor", "as_tensor"):
            self._patch(torch, attr, self._upload(getattr(torch, attr)))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for owner, attr, original in reversed(self._patches):
                if original is None:
                    delattr(owner, attr)
                else:
                    setattr(owner, attr, original)
            self._patches.clear()
