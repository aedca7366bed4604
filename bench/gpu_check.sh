#!/usr/bin/env bash
# The lent GPU machine has torch/transformers but no network: install the carried wheels
# (sam3, iopath, ftfy, wcwidth, pycocotools, open_clip_torch, av), then run the check
# (or, with GPU_SCRIPT=gpu_bench, the speed bench: bench/gpu_bench.sh).
set -u
script="${GPU_SCRIPT:-gpu_check}"
mkdir -p "${OUT:-gpu_out}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "${OUT:-gpu_out}/nvidia-smi.txt"
PYTHONUNBUFFERED=1 python3 "bench/$script.py" --video tests/data/bigbuckbunny.mp4 --out "${OUT:-gpu_out}" "$@" 2>&1 \
  | grep -v -i "warning\|it/s]\|hitting self.max_num_objects" | tee "${OUT:-gpu_out}/$script.log"
