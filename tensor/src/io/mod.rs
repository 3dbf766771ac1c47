//! Safetensors and PNG I/O, f16/bf16 conversion (being written).
