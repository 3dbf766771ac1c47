#!/usr/bin/env bash
# The wgpu backend against torch on a lent GPU machine that has no cargo and no
# network (the `device` tool): everything it runs is built here and carried in
# .gpu/ (ignored by git), the Vulkan loader in .gl/.
#
# Here, once:
#   cargo build --release -p benches --example gpu_report
#   cargo test --release -p tensor --test wgpu_ops --test wgpu_layers --no-run
#   mkdir -p .gpu; strip + xz -9 each binary into .gpu/NAME.xz (gpu_report, wgpu_ops,
#   wgpu_layers); pip install --target a folder diffusers==0.42.1 importlib_metadata
#   and tar it into .gpu/pysite.tar.xz; apt-get download libvulkan1 libegl1 libglvnd0
#   libopengl0 libgl1 libglx0 libgles2 into .gl/ (the device tool's README shows the
#   apt options; NVIDIA's Vulkan driver, libGLX_nvidia, needs libglvnd's dispatcher).
# There:
#   bash benches/peers/gpu_device.sh      (writes its logs to $OUT when set)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/gpubin /tmp/site
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# The binaries were built in /work/main and find fixtures/ through that path.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
for b in gpu_report wgpu_ops wgpu_layers; do
    xz -dc ".gpu/$b.xz" >"/tmp/gpubin/$b" && chmod +x "/tmp/gpubin/$b"
done
tar -C /tmp/site -xJf .gpu/pysite.tar.xz
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=/tmp
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
step() { echo "== $1 ($(date +%T))"; }
step "wgpu op tests on the GPU"
(cd tensor && timeout 120 /tmp/gpubin/wgpu_ops && timeout 120 /tmp/gpubin/wgpu_layers) 2>&1 \
    | grep -E "adapter|skipped|test result|FAILED|panicked" | tee "$OUT/tests.txt"
step "gpu_report check"
timeout 60 /tmp/gpubin/gpu_report check 2>&1 | tee "$OUT/check.txt"
step "matmul: wgpu, then torch"
timeout 120 /tmp/gpubin/gpu_report matmul 2>&1 | tee "$OUT/matmul_wgpu.txt"
timeout 60 python3 benches/peers/gpu_torch.py matmul 2>&1 | tee "$OUT/matmul_torch.txt"
step "SD 1.5 layers: wgpu, then torch"
timeout 90 /tmp/gpubin/gpu_report layers 2>&1 | tee "$OUT/layers_wgpu.txt"
timeout 60 python3 benches/peers/gpu_torch.py layers 2>&1 | tee "$OUT/layers_torch.txt"
step "SD 1.5 UNet step and VAE decode: wgpu, then torch"
timeout 120 /tmp/gpubin/gpu_report sd15 2>&1 | tee "$OUT/sd15_wgpu.txt"
timeout 90 python3 benches/peers/gpu_torch.py sd15 2>&1 | tee "$OUT/sd15_torch.txt"
step done
