#!/usr/bin/env bash
# Issue 7's GPU speed bench on the lent machine: the same setup as bench/gpu_check.sh.
GPU_SCRIPT=gpu_bench exec bash "$(dirname "$0")/gpu_check.sh" "$@"
