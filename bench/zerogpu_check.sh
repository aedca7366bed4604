#!/usr/bin/env bash
# ZeroGPU check on the lent GPU machine (no network): install the carried wheels (.whl-zero: gradio,
# spaces and what they need that the machine lacks, av, pycocotools, open_clip_torch, ftfy, wcwidth),
# then run bench/zerogpu_check.py. docs/zerogpu.md says how to fill .whl-zero.
set -u
mkdir -p "${OUT:-zerogpu_out}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl-zero/*.whl \
  && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,memory.total,driver_version,uuid --format=csv | tee "${OUT:-zerogpu_out}/nvidia-smi.txt"
PYTHONUNBUFFERED=1 python3 bench/zerogpu_check.py --video tests/data/bigbuckbunny.mp4 --out "${OUT:-zerogpu_out}" "$@" 2>&1 \
  | grep --line-buffered -v -i "warning\|it/s]\|hitting self.max_num_objects" | tee "${OUT:-zerogpu_out}/zerogpu_check.log"
