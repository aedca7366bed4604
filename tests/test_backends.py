"""Loading: the same code loads the small model and the real one; failures are one sentence."""

from __future__ import annotations

import pytest

from sam3_video.backends import load_backend, prepare_hub_model
from sam3_video.errors import ModelUnavailableError


def test_backend_is_loaded_once_per_process(test_model_dir, backend):
    again = load_backend(test_model_dir, backend="transformers", device="cpu", dtype="auto")
    assert again is backend
    assert backend.name == "transformers" and backend.device == "cpu"
    # the thresholds saved in the small model's config are read back through from_pretrained
    assert backend.default_thresholds == pytest.approx((0.44, 0.46))


@pytest.mark.parametrize(
    "model, reason",
    [
        ("facebook/sam3", "HF_HUB_OFFLINE is set"),
        ("bad id!!", "not a hub repository id"),
        ("./no/such/folder", "no such file or folder"),
    ],
)
def test_unloadable_models_raise_one_sentence(model, reason):
    with pytest.raises(ModelUnavailableError) as caught:
        load_backend(model, device="cpu")
    text = str(caught.value)
    assert reason in text and model in text and "HF_TOKEN" in text and "make-test-model" in text
    assert "\n" not in text


def test_local_folders_skip_the_hub(test_model_dir):
    assert prepare_hub_model(test_model_dir, ("model.safetensors",)) is False


@pytest.mark.gpu
def test_the_small_model_finds_the_same_objects_on_cuda(test_model_dir, backend, carphone):
    """On a CUDA GPU (float32, so that the two can be compared) the small model gives the CPU's ids
    on every frame and nearly its masks (kernels differ in the last bits)."""
    import numpy as np
    import torch

    from sam3_video.session import segment

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cuda = load_backend(test_model_dir, backend="transformers", device="cuda", dtype="float32")
    on_cpu = list(segment(carphone, "person, window", backend, 0, "forward", 8))
    on_gpu = list(segment(carphone, "person, window", cuda, 0, "forward", 8))
    assert [r.frame_index for r in on_gpu] == [r.frame_index for r in on_cpu] == list(range(8))
    for a, b in zip(on_cpu, on_gpu):
        assert a.obj_ids.tolist() == b.obj_ids.tolist() and a.labels == b.labels
        for m, n in zip(a.masks, b.masks):
            union = np.logical_or(m, n).sum()
            assert union == 0 or np.logical_and(m, n).sum() / union > 0.98


def _members(protocol) -> tuple[list[str], list[str]]:
    """(attributes, methods) a Protocol declares."""
    attributes = list(protocol.__annotations__)
    methods = [n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")]
    return attributes, methods


def test_every_registered_backend_conforms_to_the_seam(backend, carphone):
    """The registry's classes and their sessions have every member of base.Backend and
    base.BackendSession, methods with the protocol's parameters; the loaded backend and a session of
    it pass isinstance against the protocols (Meta's cannot load without CUDA: checked statically)."""
    import inspect

    from sam3_video.backends import REGISTRY, backend_class
    from sam3_video.backends.base import Backend, BackendSession
    from sam3_video.video import probe

    assert isinstance(backend, Backend)
    session = backend.open(carphone, probe(carphone))
    try:
        assert isinstance(session, BackendSession)
    finally:
        session.close()
    for name in REGISTRY:
        cls = backend_class(name)
        module = inspect.getmodule(cls)
        session_cls = getattr(module, inspect.signature(cls.open).return_annotation.strip("'\""))
        assert cls.name == name
        assert list(inspect.signature(cls.__init__).parameters)[1:4] == ["model_id", "device", "dtype"]
        for klass, protocol in ((cls, Backend), (session_cls, BackendSession)):
            attributes, methods = _members(protocol)
            init = inspect.getsource(klass.__init__)
            for attr in attributes:  # a class attribute, or set by __init__
                assert hasattr(klass, attr) or f"self.{attr} =" in init, f"{klass.__name__} lacks {attr}"
            for method in methods:
                assert callable(getattr(klass, method, None)), f"{klass.__name__} lacks {method}()"
                want = list(inspect.signature(getattr(protocol, method)).parameters)
                got = list(inspect.signature(getattr(klass, method)).parameters)
                assert got[: len(want)] == want, f"{klass.__name__}.{method}{got} is not {want}"
