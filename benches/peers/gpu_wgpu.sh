#!/usr/bin/env bash
# The wgpu backend on a real GPU: correctness first, then the CPU-vs-wgpu benches.
# Meant for a lent GPU machine (the team's CI only has lavapipe, Mesa's software
# Vulkan). Needs a Vulkan driver for the GPU (NVIDIA: the driver's Vulkan ICD,
# /usr/share/vulkan/icd.d/nvidia_icd.json or /etc/vulkan/icd.d/...), and either
# network access for cargo or a target/ built beforehand.
#
#   benches/peers/gpu_wgpu.sh            # tests + benches (about 10 minutes)
#   QUICK=1 benches/peers/gpu_wgpu.sh    # tests + the matmul and attention groups only
#
# Prints the adapter wgpu picked; if that says llvmpipe, the GPU's Vulkan driver is
# missing and the numbers are the CPU's.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== Vulkan ICDs"; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null || true
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv || true
echo "== correctness (every op against the CPU, tiny-sd pipeline parity)"
cargo test --release -p tensor --test wgpu_ops --test wgpu_layers -- --nocapture 2>&1 | grep -E "skipped|test result|FAILED|panicked" || true
cargo test --release -p diffusion --test wgpu_pipeline -- --nocapture 2>&1 | grep -E "wgpu vs cpu|skipped|test result|FAILED" || true
cargo test --release -p lesson-01-matmul --test claims 2>&1 | grep -E "test result|FAILED" || true
echo "== sd generate on tiny-sd"
cargo run --release -p diffusion --bin sd -- generate --model fixtures/tiny-sd \
    --prompt "a red sneaker" --steps 4 --seed 1 --device wgpu --out /tmp/gpu-wgpu-tiny.png --force 2>&1 | grep -E "device:|wrote"
echo "== benches (compute rows wait for the GPU without reading back; transfers apart)"
if [[ "${QUICK:-0}" == 1 ]]; then
    cargo bench -p benches --bench wgpu -- 'matmul/|attention/' 2>&1 | grep -E "^[a-z_]+/|time:|thrpt:"
else
    cargo bench -p benches --bench wgpu 2>&1 | grep -E "^[a-z_]+/|time:|thrpt:"
fi
