//! Safetensors checkpoints: read (memory-mapped) and write (atomically).
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype": "F16", "shape": [320, 4, 3, 3], "data_offsets": [b, e]}}`),
//! then the raw row-major little-endian tensor bytes. [`SafeTensorsFile`] maps the
//! file into memory and parses only the header; [`SafeTensorsFile::get`] copies one
//! tensor out, widened to f32 (see [`crate::io::dtype`]). So a 3.4 GB UNet costs its
//! f32 copies, not an extra read of the whole file.
//!
//! Errors name the path, and the key where there is one: a missing file, a truncated
//! file, a corrupt header, a missing key (with some keys that do exist), a dtype with
//! no f32 conversion. Introduced with checkpoint loading in `lessons/03-tensors`.
//!
//! ```
//! use tensor::io::{safetensors, DType};
//! use tensor::Tensor;
//! let dir = std::env::temp_dir().join(format!("st-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("w.safetensors");
//! let w = Tensor::from_vec(vec![0.5, -1.0, 3.0, 0.1], [2, 2]).unwrap();
//! safetensors::save(&path, [("layer.weight", &w)], DType::F16).unwrap();
//! let file = safetensors::SafeTensorsFile::open(&path).unwrap();
//! assert_eq!(file.info("layer.weight").unwrap().shape, vec![2, 2]);
//! assert_eq!(file.info("layer.weight").unwrap().dtype, DType::F16);
//! // f16 keeps 11 significant bits: 0.1 comes back as 0.0999755859375.
//! let back = file.get("layer.weight").unwrap().to_vec().unwrap();
//! assert_eq!(back, vec![0.5, -1.0, 3.0, 0.0999755859375]);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Metadata, SafeTensorError, View};

use super::atomic::write_atomic_with;
use super::dtype::{decode_to_f32, encode_from_f32, DType};
use crate::device::Device;
use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::tensor::Tensor;

/// Name, dtype and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// An open, memory-mapped safetensors file whose header has been checked.
pub struct SafeTensorsFile {
    path: PathBuf,
    mmap: Mmap,
    /// Start of the data section: 8 + header length.
    data_start: usize,
    metadata: Metadata,
    /// Tensor infos sorted by name.
    infos: Vec<TensorInfo>,
}

impl std::fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SafeTensorsFile({}, {} tensors, {} bytes)",
            self.path.display(),
            self.infos.len(),
            self.mmap.len()
        )
    }
}

/// Explain a header error from the safetensors crate, with what the file itself says.
fn header_error(path: &Path, bytes: &[u8], err: SafeTensorError) -> TensorError {
    let len = bytes.len();
    let declared = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes);
    let snippet = || {
        let end = bytes.len().min(8 + 60);
        String::from_utf8_lossy(bytes.get(8..end).unwrap_or(&[])).into_owned()
    };
    let msg = match err {
        SafeTensorError::HeaderTooSmall => format!(
            "not a safetensors file, or truncated: {len} bytes is less than the 8-byte header length"
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "truncated or corrupt: the header length field says {} bytes but the file has only {len} bytes",
            declared.unwrap_or(0)
        ),
        SafeTensorError::HeaderTooLarge => format!(
            "corrupt header: length field {} exceeds the 100 MB limit (not a safetensors file?)",
            declared.unwrap_or(0)
        ),
        SafeTensorError::InvalidHeader | SafeTensorError::InvalidHeaderStart => {
            "corrupt header: the JSON header is not valid UTF-8".to_string()
        }
        SafeTensorError::InvalidHeaderDeserialization | SafeTensorError::JsonError(_) => format!(
            "corrupt header: not a valid safetensors JSON header (starts {:?})",
            snippet()
        ),
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "truncated or corrupt: the tensors in the header do not end exactly at the end of the file ({len} bytes)"
        ),
        SafeTensorError::InvalidOffset(name) => {
            format!("corrupt header: tensor '{name}' has data offsets that do not follow the previous tensor")
        }
        SafeTensorError::TensorInvalidInfo => {
            "corrupt header: a tensor's byte range does not match its shape and dtype".to_string()
        }
        SafeTensorError::ValidationOverflow => {
            "corrupt header: a tensor's shape overflows when multiplied out".to_string()
        }
        other => format!("cannot read safetensors header: {other:?}"),
    };
    TensorError::format(path, msg)
}

impl SafeTensorsFile {
    /// Open and memory-map `path`, checking its header and that the tensor data exactly
    /// fills the rest of the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| TensorError::io(&path, source);
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only. Another process truncating the file while it
        // is mapped would make reads fault; checkpoints are not edited in place.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| header_error(&path, &mmap, e))?;
        let mut infos = Vec::with_capacity(metadata.tensors().len());
        for (name, info) in metadata.tensors() {
            let dtype = DType::from_safetensors(info.dtype).ok_or_else(|| {
                TensorError::format(
                    &path,
                    format!("tensor '{name}' has unknown dtype {:?}", info.dtype),
                )
            })?;
            infos.push(TensorInfo {
                name,
                dtype,
                shape: info.shape.clone(),
            });
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(SafeTensorsFile {
            path,
            mmap,
            data_start: 8 + header_len,
            metadata,
            infos,
        })
    }

    /// The path this file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// True when the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.infos.iter().map(|i| i.name.as_str()).collect()
    }

    /// Name, dtype and shape of every tensor, sorted by name.
    pub fn infos(&self) -> &[TensorInfo] {
        &self.infos
    }

    /// Name, dtype and shape of one tensor, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.infos
            .binary_search_by(|i| i.name.as_str().cmp(name))
            .ok()
            .map(|k| &self.infos[k])
    }

    /// True when a tensor of this name is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.info(name).is_some()
    }

    /// The free-form `__metadata__` string map, if the file has one.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }

    fn missing_key(&self, name: &str) -> TensorError {
        const SHOWN: usize = 5;
        let mut near: Vec<&str> = self.names();
        // Show keys sharing the longest prefix with the wanted one first.
        let common = |k: &str| {
            k.bytes()
                .zip(name.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        };
        near.sort_by_key(|k| std::cmp::Reverse(common(k)));
        let shown: Vec<String> = near.iter().take(SHOWN).map(|k| format!("'{k}'")).collect();
        let more = self.len().saturating_sub(SHOWN);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let available = if shown.is_empty() {
            "the file holds no tensors".to_string()
        } else {
            format!("available: {}{tail}", shown.join(", "))
        };
        TensorError::format(&self.path, format!("no tensor named '{name}'; {available}"))
    }

    /// The stored bytes of one tensor, with its dtype and shape.
    pub fn raw(&self, name: &str) -> Result<(&TensorInfo, &[u8])> {
        let info = self.info(name).ok_or_else(|| self.missing_key(name))?;
        let (b, e) = self
            .metadata
            .info(name)
            .map(|i| i.data_offsets)
            .ok_or_else(|| self.missing_key(name))?;
        let bytes = self
            .mmap
            .get(self.data_start + b..self.data_start + e)
            .ok_or_else(|| {
                TensorError::format(
                    &self.path,
                    format!("tensor '{name}' lies past the end of the file"),
                )
            })?;
        Ok((info, bytes))
    }

    /// One tensor, converted to f32 (from F32, F16, BF16, F64, BOOL and the integer
    /// types; f8 tensors give an error naming the key and dtype).
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let (info, bytes) = self.raw(name)?;
        let data = decode_to_f32(bytes, info.dtype).map_err(|e| {
            TensorError::format(
                &self.path,
                format!("tensor '{name}' (dtype {}): {e}", info.dtype),
            )
        })?;
        let start = bytes.as_ptr() as usize - self.mmap.as_ptr() as usize;
        self.release(start, bytes.len());
        Tensor::from_vec(data, info.shape.clone())
    }

    /// Drop the mapped pages of bytes `[start, start + len)` from this process's
    /// resident set once they have been copied out, so loading a 3.4 GB UNet costs
    /// its f32 copies and not the file's pages as well (peak RSS about halved). The
    /// pages stay in the OS page cache; a later read faults them back in.
    fn release(&self, start: usize, len: usize) {
        #[cfg(unix)]
        {
            // SAFETY: the map is read-only and private, and no slice of these bytes
            // outlives `get`; MADV_DONTNEED on such a mapping only drops pages, which
            // are re-read from the file if touched again. A failure is only advice lost.
            let _ = unsafe {
                self.mmap
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
        }
        #[cfg(not(unix))]
        let _ = (start, len);
    }

    /// Every tensor, converted to f32, by name.
    pub fn load_all(&self) -> Result<BTreeMap<String, Tensor>> {
        self.infos
            .iter()
            .map(|i| Ok((i.name.clone(), self.get(&i.name)?)))
            .collect()
    }
}

/// Load every tensor of a safetensors file as f32, by name (sorted).
pub fn load(path: impl AsRef<Path>) -> Result<BTreeMap<String, Tensor>> {
    SafeTensorsFile::open(path)?.load_all()
}

/// One tensor to be written: its CPU data and layout, encoded lazily in `dtype` so
/// that only one tensor's bytes exist at a time while saving.
struct Encoded<'a> {
    data: &'a [f32],
    layout: &'a Layout,
    dtype: DType,
}

impl Encoded<'_> {
    fn values(&self) -> Cow<'_, [f32]> {
        match self.layout.contiguous_range() {
            Some(r) => Cow::Borrowed(&self.data[r]),
            None => Cow::Owned(self.layout.offsets().map(|o| self.data[o]).collect()),
        }
    }
}

impl View for Encoded<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_safetensors()
    }
    fn shape(&self) -> &[usize] {
        self.layout.dims()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // `save` checked that dtype is F32, F16 or BF16, so encoding cannot fail.
        Cow::Owned(encode_from_f32(&self.values(), self.dtype).unwrap_or_default())
    }
    fn data_len(&self) -> usize {
        self.layout.numel() * self.dtype.size_in_bytes()
    }
}

/// Write tensors to a safetensors file at `path` in `dtype` (F32, F16 or BF16),
/// atomically: an existing file at `path` is replaced only once the new one is
/// complete. Any layout is accepted (non-contiguous tensors are written in logical
/// row-major order). Names must be unique.
pub fn save<'t, S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (S, &'t Tensor)>,
    dtype: DType,
) -> Result<()> {
    let path = path.as_ref();
    if !dtype.is_storage_float() {
        return Err(TensorError::format(
            path,
            format!("cannot save in dtype {dtype}: choose F32, F16 or BF16"),
        ));
    }
    // Tensors on a GPU are downloaded first (a cheap clone for CPU ones).
    let hosted = tensors
        .into_iter()
        .map(|(name, t)| Ok((name.as_ref().to_string(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut views: BTreeMap<String, Encoded<'_>> = BTreeMap::new();
    for (name, t) in &hosted {
        let name = name.clone();
        let view = Encoded {
            data: t.cpu_storage()?,
            layout: t.layout(),
            dtype,
        };
        if views.insert(name.clone(), view).is_some() {
            return Err(TensorError::format(
                path,
                format!("tensor name '{name}' given twice"),
            ));
        }
    }
    write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views, &None, tmp).map_err(|e| match e {
            SafeTensorError::IoError(source) => TensorError::io(tmp, source),
            other => TensorError::format(path, format!("cannot serialize: {other:?}")),
        })
    })
}
