"""The app's one model: loaded once, eagerly, in the main thread, and named to the GPU steps by a
`ModelRef` of plain values.

On Hugging Face ZeroGPU the load must happen at import, in the main thread: `spaces` patches
torch in that thread only, so `.to("cuda")` there makes placeholders that it packs at launch and
moves to the GPU inside each worker process, while the same call from a Gradio thread fails
("Low-level CUDA init reached"). A worker is a fork of the process that loaded the model, so
`ModelRef.load()` finds the loaded copy there, as it does in-process elsewhere. A model that
cannot load is kept as the sentence that says why (the page shows it), never an exception at
import.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..backends import Backend, load_backend, resolve
from ..config import DEFAULTS
from ..errors import BadRequestError, Sam3VideoError


@dataclass(frozen=True)
class ModelRef:
    """A loaded backend by its settings, resolved (`backends.resolve`): picklable."""

    backend: str
    model_id: str
    device: str
    dtype: str

    def load(self) -> Backend:
        """The loaded backend in this process (in a ZeroGPU worker: the copy it was forked with)."""
        return load_backend(self.model_id, self.backend, self.device, self.dtype)


class AppModel:
    """Loads the model now; `ref` names it, or `problem` says why there is none."""

    def __init__(self, model: str | None = None, backend: str | None = None, device: str | None = None,
                 dtype: str | None = None):
        self.ref: ModelRef | None = None
        self.problem: str | None = None
        try:
            ref = ModelRef(*resolve(model or DEFAULTS.model, backend or DEFAULTS.backend, device or DEFAULTS.device,
                                    dtype or DEFAULTS.dtype))
            ref.load()
            self.ref = ref
        except Sam3VideoError as err:
            self.problem = str(err)

    def require(self) -> ModelRef:
        """The model's ref, or the sentence that says why there is none, as a BadRequestError."""
        if self.ref is None:
            raise BadRequestError(self.problem or "The model is not loaded.")
        return self.ref
