//! Element types of stored tensors, and their conversion to and from f32.
//!
//! f32 is the compute type; f16 and bf16 are storage types: a checkpoint in half
//! precision is widened to f32 when it is loaded and narrowed (round to nearest, ties to
//! even, as PyTorch does) when it is saved. Slices convert through the `half` crate's
//! slice routines, which use the CPU's F16C instructions when it has them.
//! Integer tensors (such as CLIP's I64 `position_ids`) widen to f32 as well; values
//! beyond 2^24 lose their low bits, as they would in `torch.tensor(..).float()`.
//!
//! Bytes are little-endian, element after element (row-major), as safetensors stores
//! them. Introduced with the checkpoint loader in `lessons/03-tensors`.
//!
//! ```
//! use tensor::io::dtype::{decode_to_f32, encode_from_f32, DType};
//! let bytes = encode_from_f32(&[1.0, 0.1, -2.5], DType::BF16).unwrap();
//! assert_eq!(bytes.len(), 6);                        // 2 bytes per bf16
//! // bf16 keeps 8 significant bits: 0.1 becomes 0.10009765625.
//! assert_eq!(decode_to_f32(&bytes, DType::BF16).unwrap(), vec![1.0, 0.10009765625, -2.5]);
//! ```

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::error::{Result, TensorError};

/// The element types a safetensors file can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// Boolean, one byte (0 or 1).
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    /// 8-bit float, 4 exponent bits, 3 mantissa bits (not convertible here).
    F8E4M3,
    /// 8-bit float, 5 exponent bits, 2 mantissa bits (not convertible here).
    F8E5M2,
    /// IEEE half precision: 5 exponent bits, 10 mantissa bits.
    F16,
    /// bfloat16: f32's 8 exponent bits, 7 mantissa bits.
    BF16,
    F32,
    F64,
}

impl DType {
    /// Every dtype, in the order safetensors lists them.
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::F8E5M2,
        DType::F8E4M3,
        DType::I16,
        DType::U16,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::U32,
        DType::F32,
        DType::F64,
        DType::I64,
        DType::U64,
    ];

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The name safetensors headers use (`"F32"`, `"BF16"`, `"F8_E4M3"`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::U16 => "U16",
            DType::I32 => "I32",
            DType::U32 => "U32",
            DType::I64 => "I64",
            DType::U64 => "U64",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E5M2 => "F8_E5M2",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }

    /// True for the types [`decode_to_f32`] can read (all but the f8 types).
    pub fn decodes_to_f32(self) -> bool {
        !matches!(self, DType::F8E4M3 | DType::F8E5M2)
    }

    /// True for the types [`encode_from_f32`] can write: F32, F16, BF16.
    pub fn is_storage_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// The safetensors crate's name for this type.
    pub fn to_safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::Bool => S::BOOL,
            DType::U8 => S::U8,
            DType::I8 => S::I8,
            DType::I16 => S::I16,
            DType::U16 => S::U16,
            DType::I32 => S::I32,
            DType::U32 => S::U32,
            DType::I64 => S::I64,
            DType::U64 => S::U64,
            DType::F8E4M3 => S::F8_E4M3,
            DType::F8E5M2 => S::F8_E5M2,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::F32 => S::F32,
            DType::F64 => S::F64,
        }
    }

    /// This crate's type for a safetensors dtype; `None` for a type added to
    /// safetensors after this code was written.
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.to_safetensors() == dtype)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Widen `N`-byte little-endian elements to f32, one at a time (the portable path).
fn decode_each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// Half-precision slice to f32: the vectorised `half` routine when the bytes are
/// aligned for `H` and the machine is little-endian, else element by element.
fn decode_half<H>(bytes: &[u8], from_le: impl Fn([u8; 2]) -> f32) -> Vec<f32>
where
    H: bytemuck::Pod,
    [H]: HalfFloatSliceExt,
{
    if cfg!(target_endian = "little") {
        if let Ok(h) = bytemuck::try_cast_slice::<u8, H>(bytes) {
            let mut out = vec![0.0f32; h.len()];
            h.convert_to_f32_slice(&mut out);
            return out;
        }
    }
    decode_each::<2>(bytes, from_le)
}

/// Convert little-endian bytes of `dtype` to f32 values.
///
/// Errors when the byte count is not a multiple of the element size, or for the f8
/// types, which have no f32 conversion here.
pub fn decode_to_f32(bytes: &[u8], dtype: DType) -> Result<Vec<f32>> {
    let size = dtype.size_in_bytes();
    if !bytes.chunks_exact(size).remainder().is_empty() {
        return Err(TensorError::invalid(
            "decode_to_f32",
            format!(
                "{} bytes is not a whole number of {dtype} elements ({size} bytes each)",
                bytes.len()
            ),
        ));
    }
    let out = match dtype {
        DType::F32 => {
            if cfg!(target_endian = "little") {
                if let Ok(v) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
                    return Ok(v.to_vec());
                }
            }
            decode_each::<4>(bytes, f32::from_le_bytes)
        }
        DType::F16 => decode_half::<f16>(bytes, |a| f16::from_le_bytes(a).to_f32()),
        DType::BF16 => decode_half::<bf16>(bytes, |a| bf16::from_le_bytes(a).to_f32()),
        DType::F64 => decode_each::<8>(bytes, |a| f64::from_le_bytes(a) as f32),
        DType::Bool => bytes.iter().map(|&b| f32::from(u8::from(b != 0))).collect(),
        DType::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        DType::I8 => bytes.iter().map(|&b| f32::from(b as i8)).collect(),
        DType::I16 => decode_each::<2>(bytes, |a| f32::from(i16::from_le_bytes(a))),
        DType::U16 => decode_each::<2>(bytes, |a| f32::from(u16::from_le_bytes(a))),
        DType::I32 => decode_each::<4>(bytes, |a| i32::from_le_bytes(a) as f32),
        DType::U32 => decode_each::<4>(bytes, |a| u32::from_le_bytes(a) as f32),
        DType::I64 => decode_each::<8>(bytes, |a| i64::from_le_bytes(a) as f32),
        DType::U64 => decode_each::<8>(bytes, |a| u64::from_le_bytes(a) as f32),
        DType::F8E4M3 | DType::F8E5M2 => {
            return Err(TensorError::invalid(
                "decode_to_f32",
                format!("dtype {dtype} cannot be converted to f32 (supported: BOOL, U8..U64, I8..I64, F16, BF16, F32, F64)"),
            ))
        }
    };
    Ok(out)
}

/// Convert f32 values to little-endian bytes of `dtype`: F32 exactly, F16 and BF16
/// rounded to nearest, ties to even (f16 overflows to +-inf; NaN stays NaN).
///
/// Errors for any other dtype: checkpoints are written in a float storage type.
pub fn encode_from_f32(values: &[f32], dtype: DType) -> Result<Vec<u8>> {
    let little = cfg!(target_endian = "little");
    Ok(match dtype {
        DType::F32 if little => bytemuck::cast_slice(values).to_vec(),
        DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 if little => {
            let mut h = vec![f16::ZERO; values.len()];
            h.convert_from_f32_slice(values);
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        DType::BF16 if little => {
            let mut h = vec![bf16::ZERO; values.len()];
            h.convert_from_f32_slice(values);
            bytemuck::cast_slice(&h).to_vec()
        }
        DType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        other => {
            return Err(TensorError::invalid(
                "encode_from_f32",
                format!("cannot write dtype {other}: choose F32, F16 or BF16"),
            ))
        }
    })
}

/// Round f32 values through `dtype` and back (what a save + load does to them).
pub fn round_through(values: &[f32], dtype: DType) -> Result<Vec<f32>> {
    decode_to_f32(&encode_from_f32(values, dtype)?, dtype)
}
