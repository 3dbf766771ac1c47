//! The IDX file format of MNIST and Fashion-MNIST, optionally gzip-compressed.
//!
//! Layout (all integers big-endian): two zero bytes, a type byte (0x08 = unsigned
//! byte, the only type these datasets use), a byte giving the number of dims `d`, then
//! `d` u32 sizes, then the row-major data. An image file is (N, 28, 28) (magic
//! 0x00000803), a label file (N) (magic 0x00000801).
//!
//! Every length is checked: a truncated, padded or corrupt file, or a broken gzip
//! stream, is an error naming the file. Introduced with Fashion-MNIST in
//! `lessons/03-tensors`.
//!
//! ```
//! use tensor::data::idx::parse_idx;
//! // A (2, 3) u8 array: magic 0x00000802, dims 2 and 3, six bytes of data.
//! let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
//! let a = parse_idx(&bytes, "example.idx".as_ref()).unwrap();
//! assert_eq!(a.dims, vec![2, 3]);
//! assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
//! ```

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Result, TensorError};

/// A u8 array read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major data, `dims.iter().product()` bytes.
    pub data: Vec<u8>,
}

/// Parse IDX bytes (already decompressed). `path` is only used in error messages.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let magic = bytes.get(..4).ok_or_else(|| {
        TensorError::format(
            path,
            format!(
                "IDX file is {} bytes, too short for the 4-byte magic number",
                bytes.len()
            ),
        )
    })?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(TensorError::format(
            path,
            format!(
                "not an IDX file: magic number starts {:02x} {:02x}, expected 00 00",
                magic[0], magic[1]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(TensorError::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let rank = usize::from(magic[3]);
    if rank == 0 {
        return Err(TensorError::format(
            path,
            "IDX header declares 0 dimensions",
        ));
    }
    let header_len = 4 + 4 * rank;
    let dim_bytes = bytes.get(4..header_len).ok_or_else(|| {
        TensorError::format(
            path,
            format!(
                "truncated IDX header: {rank} dims need {header_len} header bytes, file has {}",
                bytes.len()
            ),
        )
    })?;
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| TensorError::format(path, format!("IDX dims {dims:?} overflow")))?;
    let got = bytes.len() - header_len;
    if got != expected {
        let what = if got < expected {
            "truncated"
        } else {
            "corrupt"
        };
        return Err(TensorError::format(
            path,
            format!("{what} IDX file: dims {dims:?} need {expected} data bytes, found {got}"),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Read the raw bytes of a file, gunzipping it when it starts with the gzip magic
/// (`1f 8b`), whatever its name.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| TensorError::io(path, source))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 2);
        MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| {
                TensorError::format(path, format!("corrupt or truncated gzip stream: {e}"))
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Read an IDX file (plain or gzipped).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    parse_idx(&read_maybe_gz(path)?, path)
}

/// Read an IDX file and check its rank: 3 for images (N, H, W), 1 for labels (N).
pub fn read_idx_rank(path: impl AsRef<Path>, rank: usize) -> Result<IdxArray> {
    let path = path.as_ref();
    let a = read_idx(path)?;
    if a.dims.len() != rank {
        return Err(TensorError::format(
            path,
            format!(
                "expected an IDX array of rank {rank}, found dims {:?}",
                a.dims
            ),
        ));
    }
    Ok(a)
}
