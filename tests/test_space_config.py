"""The Space's configuration against the platform's rules (docs/zerogpu.md, "Today's platform": the
hub docs of August 2026 and spaces 0.51.3): the README's front matter as the Hub checks it at
push, and the pins as ZeroGPU builds them: a torch it supports with its torchvision, CUDA builds that run on its Blackwell GPUs, and a
Python 3.12 wheel for every pinned package (the Space runs Python 3.12).

The wheel check asks the package registry (pip's resolver, metadata only): it needs the network
to PyPI, as CI has.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: ZeroGPU's torch versions (hub docs, August 2026) and the torchvision release of each.
ZEROGPU_TORCH = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}
ZEROGPU_PYTHON = ("3.12", "3.12.12")  # 3.10.13 is the other one it runs; we ship for 3.12
SHORT_DESCRIPTION_MAX = 60


def front_matter() -> dict:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("---\n"), "README.md must start with the Space's front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def pins(name: str = "requirements.txt") -> dict[str, str]:
    """name -> version of every `name==version` line (extras dropped)."""
    found = {}
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
            if match:
                found[match.group(1).lower()] = match.group(3)
    return found


def test_the_front_matter_is_what_the_hub_and_zerogpu_take():
    config = front_matter()
    assert config["sdk"] == "gradio" and str(config["sdk_version"]) == pins()["gradio"]
    assert str(config["python_version"]) in ZEROGPU_PYTHON
    assert os.path.isfile(os.path.join(REPO, config["app_file"]))
    assert 0 < len(config["short_description"]) <= SHORT_DESCRIPTION_MAX, config["short_description"]
    from sam3_video.config import Defaults

    assert Defaults.model in config.get("models", [])  # the Space page links the model it needs


def test_torch_is_a_pair_zerogpu_builds_and_runs_on_blackwell():
    import torch
    import torchvision

    wanted = pins()
    assert wanted["torch"] in ZEROGPU_TORCH and wanted["torchvision"] == ZEROGPU_TORCH[wanted["torch"]]
    assert torch.__version__.split("+")[0] == wanted["torch"]  # the tests run on the pinned pair
    assert torchvision.__version__.split("+")[0] == wanted["torchvision"]
    assert torch.version.cuda and int(torch.version.cuda.split(".")[0]) >= 12  # a CUDA build (12.8+ for sm_120)
    assert "sm_120" in torch._C._cuda_getArchFlags().split()  # kernels for the RTX Pro 6000 Blackwell


def test_the_tests_run_on_the_app_pins():
    with open(os.path.join(REPO, "requirements-test.txt"), encoding="utf-8") as f:
        assert "-r requirements.txt" in [line.strip() for line in f]
    assert not set(pins()) & set(pins("requirements-test.txt"))  # one place for each pin


def test_every_pinned_package_has_a_python_312_wheel(tmp_path):
    """pip resolves each requirement for CPython 3.12 on manylinux x86-64, wheels only (metadata,
    nothing downloaded): a pin without such a wheel fails the Space's build."""
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
                                             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")]
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
                           "--only-binary=:all:", "--python-version=3.12", *platforms, f"--target={tmp_path / 't'}",
                           "--quiet", f"--report={report}", "-r", os.path.join(REPO, "requirements.txt")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = {item["metadata"]["name"].lower().replace("_", "-"): item["download_info"]["url"].rsplit("/", 1)[-1]
              for item in json.loads(report.read_text())["install"]}
    for name, version in pins().items():
        wheel = wheels[name.replace("_", "-")]
        assert wheel.endswith(".whl") and f"-{version}-" in wheel, (name, wheel)
        tags = wheel[:-4].split("-")[-3:]
        assert tags[0] in ("cp312", "py3", "py2.py3") or tags[1] == "abi3", (name, wheel)
