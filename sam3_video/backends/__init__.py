"""Choosing and loading a backend.

`load_backend()` returns a shared, loaded backend: the model is loaded once per process for
each (backend, model, device, dtype).

The `auto` rule: transformers, unless the model is an official `.pt` checkpoint (a file, or a
folder with `sam3.pt` and no `config.json`), which only Meta's package reads. Reasons: the
transformers backend detects several phrases in one pass (Meta's 0.1.4 resets its session for
each text prompt, so k phrases cost k passes); it runs on the CPU as well as CUDA; it streams
frames from disk (Meta's predictor loads the whole video onto the GPU, about 12 MB a frame at
1008 px float32); and stopping keeps every processed frame (Meta's buffers up to 15 frames
internally, which a stop loses). docs/backends.md has the measurements.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from ..config import DEFAULTS
from ..errors import BackendUnavailableError, ModelUnavailableError
from .base import Backend, BackendSession

__all__ = ["Backend", "BackendSession", "REGISTRY", "backend_class", "load_backend", "resolve", "resolve_backend", "resolve_device", "load_errors", "prepare_hub_model"]

#: The backends, by name: "module:class", imported when first loaded. A class takes (model_id, device,
#: dtype) and conforms to base.Backend (tests/test_backends.py checks each one); `auto` picks one.
REGISTRY: dict[str, str] = {
    "transformers": "sam3_video.backends.transformers:TransformersBackend",
    "sam3": "sam3_video.backends.official:OfficialBackend",
}
BACKENDS = ("auto", *REGISTRY)
_LOADED: dict[tuple, Backend] = {}
_LOAD_LOCK = threading.Lock()

GATED_HINT = (
    "facebook/sam3 is gated: accept its licence at https://huggingface.co/facebook/sam3 while "
    "logged in, create a read token and set HF_TOKEN to it, or pass --model (SAM3_MODEL) the path "
    "of a local copy; to try the tool without the weights, build a small random model with "
    "`python -m sam3_video make-test-model DIR` and pass that folder"
)


def model_unavailable(model_id: str, reason: str) -> ModelUnavailableError:
    return ModelUnavailableError(f"Could not load the SAM3 model '{model_id}' ({reason}). {GATED_HINT}.")


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    lowered = text.lower()
    if "gated" in lowered or "401" in lowered or "403" in lowered or "authenticat" in lowered:
        return "access to the gated repository was refused"
    if "couldn't connect" in lowered or "offline" in lowered or "connection" in lowered:
        return "the Hugging Face Hub could not be reached and no cached copy was found"
    if "repo id must be" in lowered or "repo_id" in lowered:
        return "no such local folder, and not a hub repository id"
    if "not a valid model identifier" in lowered or "repository not found" in lowered or "404" in lowered:
        return "no such local folder or hub repository"
    if "can't load" in lowered or "cannot find the requested files" in lowered:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            return "HF_HUB_OFFLINE is set and the Hugging Face cache has no copy"
        return "it is neither a local copy nor in the Hugging Face cache, and the hub did not provide it"
    if "does not appear to have" in lowered or "no file named" in lowered:
        return "the folder lacks the model files (config.json, model.safetensors, processor files)"
    token = os.environ.get("HF_TOKEN")
    if token:
        text = text.replace(token, "***")
    return text[:160] or type(err).__name__


@contextlib.contextmanager
def load_errors(model_id: str) -> Iterator[None]:
    """Turn whatever a loader raises into one `ModelUnavailableError` sentence (never a token)."""
    try:
        yield
    except ModelUnavailableError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
        raise model_unavailable(model_id, _reason(err)) from None
    except Exception as err:  # hub client errors and the like
        raise model_unavailable(model_id, _reason(err)) from None


def prepare_hub_model(model_id: str, weight_files: tuple[str, ...]) -> bool:
    """Before loading a hub id: True when the weights are already cached (load them offline).

    Otherwise ask the hub once, quickly, whether these weights can be had, so that a gated
    repository, a wrong id or no network is one sentence at once instead of minutes of retries.
    """
    if os.path.exists(model_id):
        return False
    from huggingface_hub import HfApi, errors, try_to_load_from_cache

    try:
        if any(isinstance(try_to_load_from_cache(model_id, name), str) for name in weight_files):
            return True
        HfApi().auth_check(model_id)
    except errors.GatedRepoError:
        raise model_unavailable(model_id, "access to the gated repository was refused: no HF_TOKEN, or its account has not accepted the licence") from None
    except errors.RepositoryNotFoundError:
        raise model_unavailable(model_id, "no such local folder or hub repository, or it is private") from None
    except errors.OfflineModeIsEnabled:
        raise model_unavailable(model_id, "HF_HUB_OFFLINE is set and the Hugging Face cache has no copy") from None
    except errors.HFValidationError:
        raise model_unavailable(model_id, "no such local folder, and not a hub repository id") from None
    except Exception:  # connection errors of the HTTP client, timeouts, ...
        raise model_unavailable(model_id, "the Hugging Face Hub could not be reached and the cache has no copy") from None
    return False


def resolve_device(device: str = "auto") -> str:
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError("CUDA was asked for but torch sees no GPU here. Use --device cpu or auto.")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise BackendUnavailableError(f"Unknown device '{device}'. Use auto, cuda, cuda:N or cpu.")
    return device


def _is_official_checkpoint(model_id: str) -> bool:
    if model_id.endswith(".pt") or model_id.endswith(".pth"):
        return True
    return os.path.isdir(model_id) and os.path.isfile(os.path.join(model_id, "sam3.pt")) and not os.path.isfile(
        os.path.join(model_id, "config.json")
    )


def resolve_backend(backend: str, model_id: str) -> str:
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"Unknown backend '{backend}'. Use one of: {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "sam3" if _is_official_checkpoint(model_id) else "transformers"
    return backend


def resolve(model: str | None = None, backend: str = "auto", device: str = "auto",
            dtype: str = "auto") -> tuple[str, str, str, str]:
    """(backend name, model id, device, dtype): the settings checked and resolved, as
    `load_backend` keys its cache (a GPU step names its model by this key: plain values that a
    ZeroGPU worker receives pickled).

    Raises:
        ModelUnavailableError: a local path that does not exist.
        BackendUnavailableError: an unknown backend, device or dtype, or CUDA asked for and absent.
    """
    model_id = os.fspath(model or DEFAULTS.model)
    looks_local = model_id.startswith((".", "~", "/", os.sep))  # hub ids look like "org/name"
    if looks_local and not os.path.exists(os.path.expanduser(model_id)):
        raise model_unavailable(model_id, "no such file or folder")
    model_id = os.path.expanduser(model_id)
    name = resolve_backend(backend, model_id)
    device = resolve_device(device)
    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "bfloat16"):
        raise BackendUnavailableError(f"Unknown dtype '{dtype}'. Use auto, float32 or bfloat16.")
    return name, model_id, device, dtype


def load_backend(
    model: str | None = None, backend: str = "auto", device: str = "auto", dtype: str = "auto"
) -> Backend:
    """The loaded backend for these settings, loading it on first use.

    Raises:
        ModelUnavailableError: the model is missing, gated or broken (one sentence with the fix).
        BackendUnavailableError: the backend cannot run here.
    """
    key = resolve(model, backend, device, dtype)
    name, model_id, device, dtype = key
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = backend_class(name)(model_id, device, dtype)
        return _LOADED[key]


def backend_class(name: str) -> type:
    """The class of a registered backend (its module imported now)."""
    import importlib

    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
