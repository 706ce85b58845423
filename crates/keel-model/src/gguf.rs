//! GGUF files (versions 2 and 3): metadata, tensor directory, dequantization to f32, and the
//! mapping of llama.cpp's tensor names and layouts to Hugging Face's.

use crate::config::{Arch, LayerKind, ModelConfig};
use crate::transformer::Transformer;
use anyhow::{bail, ensure, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// Any unsigned integer type (uint8 to uint64), widened.
    U64(u64),
    /// Any signed integer type (int8 to int64), widened.
    I64(i64),
    /// float32 or float64, widened.
    F64(f64),
    /// A GGUF bool (one byte, nonzero is true).
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// An array of any value type (nesting limited to 4 levels).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer: a `U64`, or an `I64` that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U64(v) => Some(v),
            MetaValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// The value as a float: an `F64`, or either integer converted.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F64(v) => Some(v),
            MetaValue::U64(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The elements if the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// ggml tensor types keel can dequantize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float, unquantized.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the top 16 bits of an f32).
    BF16,
    /// Blocks of 32: an f16 scale and 4-bit values offset by −8 (18 bytes).
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 4-bit values (20 bytes).
    Q4_1,
    /// Blocks of 32: an f16 scale and 5-bit values offset by −16 (22 bytes).
    Q5_0,
    /// Blocks of 32: f16 scale and minimum, 5-bit values (24 bytes).
    Q5_1,
    /// Blocks of 32: an f16 scale and 8-bit signed values (34 bytes).
    Q8_0,
    /// K-quant super-blocks of 256: 4-bit values, 6-bit sub-block scales and minimums (144 bytes).
    Q4K,
    /// K-quant super-blocks of 256: 5-bit values, 6-bit sub-block scales and minimums (176 bytes).
    Q5K,
    /// K-quant super-blocks of 256: 6-bit values, 8-bit sub-block scales (210 bytes).
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }
    /// (values per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }
}

/// One entry of the tensor directory. `shape` is in Hugging Face order (rows first), the
/// reverse of GGUF's `ne`.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    /// llama.cpp's name (e.g. `blk.0.attn_q.weight`), not yet mapped to Hugging Face's.
    pub name: String,
    /// Dimensions, rows first; at most 4.
    pub shape: Vec<usize>,
    /// How the data is stored (quantized or float).
    pub kind: GgmlType,
    start: usize,
    len: usize,
}

/// An open GGUF file: header, metadata and tensor directory, with the data mapped (or owned)
/// and dequantized on demand.
pub struct GgufFile {
    /// The file read, for messages.
    pub path: PathBuf,
    /// The format version, 2 or 3.
    pub version: u32,
    /// Every metadata key (e.g. `llama.block_count`), in key order.
    pub metadata: BTreeMap<String, MetaValue>,
    /// The tensor directory in file order; each tensor's bytes are checked to lie inside the file
    /// and not overlap another's.
    pub tensors: Vec<GgufTensor>,
    map: Bytes,
}

/// The file's bytes: mapped from disk, or owned (files checked in memory, as the fuzz targets do).
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// The smallest encodings of a metadata entry (key length, empty key, type, one byte) and of a
/// tensor-directory entry (name length, dimension count, type, offset): counts read from the
/// header are checked against the bytes left before anything is reserved for them.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
const MIN_TENSOR_BYTES: usize = 8 + 4 + 4 + 8;

/// A bounds-checked little-endian reader over the header.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(n <= self.bytes.len() - self.pos, "unexpected end of file at byte {} (truncated?)", self.pos);
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn value(&mut self, kind: u32, depth: usize) -> Result<MetaValue> {
        let take = |c: &mut Self, n: usize| -> Result<[u8; 8]> {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(c.take(n)?);
            Ok(b)
        };
        Ok(match kind {
            0 => MetaValue::U64(self.u8()? as u64),
            1 => MetaValue::I64(self.u8()? as i8 as i64),
            2 => MetaValue::U64(u16::from_le_bytes(take(self, 2)?[..2].try_into().unwrap()) as u64),
            3 => MetaValue::I64(i16::from_le_bytes(take(self, 2)?[..2].try_into().unwrap()) as i64),
            4 => MetaValue::U64(self.u32()? as u64),
            5 => MetaValue::I64(self.u32()? as i32 as i64),
            6 => MetaValue::F64(f32::from_le_bytes(take(self, 4)?[..4].try_into().unwrap()) as f64),
            7 => MetaValue::Bool(self.u8()? != 0),
            8 => MetaValue::Str(self.string()?),
            9 => {
                ensure!(depth < 4, "metadata arrays nested too deeply");
                let inner = self.u32()?;
                let n = self.u64()? as usize;
                ensure!(n <= self.bytes.len() - self.pos, "metadata array of {n} entries is larger than the file");
                MetaValue::Array((0..n).map(|_| self.value(inner, depth + 1)).collect::<Result<_>>()?)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(self.u64()? as i64),
            12 => MetaValue::F64(f64::from_le_bytes(take(self, 8)?)),
            other => bail!("unknown metadata value type {other}"),
        })
    }
}

impl GgufFile {
    /// Memory-maps and parses a file; the header and directory are checked, the data is read later.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_inner(path).with_context(|| format!("cannot read GGUF file {}", path.display()))
    }

    fn open_inner(path: &Path) -> Result<Self> {
        let file = File::open(path)?;
        // SAFETY: read-only mapping of a file keel does not modify.
        let map = unsafe { Mmap::map(&file) }?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Reads a GGUF file held in memory; `path` only names it in messages.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(path, Bytes::Owned(bytes)).with_context(|| format!("cannot read GGUF file {}", path.display()))
    }

    fn parse(path: &Path, map: Bytes) -> Result<Self> {
        let mut c = Cursor { bytes: &map, pos: 0 };
        ensure!(map.len() >= 4 && &map[..4] == b"GGUF", "not a GGUF file (it does not start with \"GGUF\")");
        c.pos = 4;
        let version = c.u32()?;
        ensure!(version == 2 || version == 3, "GGUF version {version} is not supported (2 and 3 are)");
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        let left = (map.len() - c.pos) as u64;
        ensure!(
            n_kv <= left / MIN_KV_BYTES as u64 && n_tensors <= left / MIN_TENSOR_BYTES as u64,
            "the header claims {n_tensors} tensors and {n_kv} metadata entries, more than the file's {} bytes can hold (truncated or corrupt header)",
            map.len()
        );
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let kind = c.u32()?;
            let value = c.value(kind, 0).with_context(|| format!("metadata key {key}"))?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            ensure!(n_dims <= 4, "tensor {name} has {n_dims} dimensions");
            let mut shape: Vec<usize> = (0..n_dims).map(|_| c.u64().map(|d| d as usize)).collect::<Result<_>>()?;
            shape.reverse();
            let type_id = c.u32()?;
            let offset = c.u64()?;
            raw.push((name, shape, type_id, offset));
        }
        let alignment = metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32);
        ensure!(alignment > 0 && alignment.is_power_of_two(), "general.alignment {alignment} is not a power of two");
        let data_start =
            (c.pos as u64).checked_next_multiple_of(alignment).context("general.alignment is too large")?;
        let tensors = raw
            .into_iter()
            .map(|(name, shape, type_id, offset)| locate(name, shape, type_id, data_start, offset, map.len()))
            .collect::<Result<Vec<_>>>()?;
        refuse_overlaps(&tensors)?;
        Ok(GgufFile { path: path.to_path_buf(), version, metadata, tensors, map })
    }

    /// The directory entry with llama.cpp's tensor name `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The metadata value under `key`.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// Dequantizes a tensor into a new row-major f32 vector.
    pub fn dequantize(&self, t: &GgufTensor) -> Vec<f32> {
        let mut out = vec![0.0; t.shape.iter().product()];
        dequantize(t.kind, &self.map[t.start..t.start + t.len], &mut out);
        out
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// A directory entry's place in the file, with checked arithmetic: a crafted offset or shape must
/// not wrap around to bytes of another tensor, nor claim more values than can be counted.
fn locate(
    name: String,
    shape: Vec<usize>,
    type_id: u32,
    data_start: u64,
    offset: u64,
    file_len: usize,
) -> Result<GgufTensor> {
    let kind = GgmlType::from_id(type_id)
        .with_context(|| format!("tensor {name} uses ggml type {type_id}, which keel cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"))?;
    let numel = crate::limits::numel(&shape, format_args!("tensor {name}"))?;
    let (per_block, block_bytes) = kind.block();
    ensure!(numel % per_block == 0, "tensor {name}: {numel} values do not fill whole {kind:?} blocks");
    let len = (numel / per_block).checked_mul(block_bytes);
    let start = data_start.checked_add(offset).and_then(|s| usize::try_from(s).ok());
    match (start, len) {
        (Some(start), Some(len)) if start.checked_add(len).is_some_and(|end| end <= file_len) => {
            Ok(GgufTensor { name, shape, kind, start, len })
        }
        _ => bail!(
            "tensor {name}: its data (offset {offset}, shape {shape:?} of {kind:?}) lies beyond the end of the {file_len}-byte file (truncated or corrupt?)"
        ),
    }
}

/// Two tensors whose bytes overlap would load one tensor's weights as another's.
fn refuse_overlaps(tensors: &[GgufTensor]) -> Result<()> {
    let mut spans: Vec<&GgufTensor> = tensors.iter().filter(|t| t.len > 0).collect();
    spans.sort_by_key(|t| t.start);
    for pair in spans.windows(2) {
        ensure!(
            pair[0].start + pair[0].len <= pair[1].start,
            "tensors {} and {} overlap in the file (corrupt or crafted tensor offsets)",
            pair[0].name,
            pair[1].name
        );
    }
    Ok(())
}

/// Dequantizes `bytes` of type `kind` into `out`, following ggml's reference decoders.
pub fn dequantize(kind: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let (per_block, block_bytes) = kind.block();
    for (b, y) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(per_block)) {
        match kind {
            GgmlType::F32 => y[0] = f32::from_le_bytes(b.try_into().unwrap()),
            GgmlType::F16 => y[0] = f16_at(b, 0),
            GgmlType::BF16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::Q4_0 => {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
                    y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
                }
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for j in 0..16 {
                    y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
                    y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
                }
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let with_min = kind == GgmlType::Q5_1;
                let d = f16_at(b, 0);
                let (m, hi_at) = if with_min { (f16_at(b, 2), 4) } else { (0.0, 2) };
                let qh = u32::from_le_bytes(b[hi_at..hi_at + 4].try_into().unwrap());
                let qs = &b[hi_at + 4..];
                let offset = if with_min { 0 } else { 16 };
                for j in 0..16 {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    let q0 = ((qs[j] as u32 & 0x0F) | h0) as i32 - offset;
                    let q1 = ((qs[j] as u32 >> 4) | h1) as i32 - offset;
                    y[j] = q0 as f32 * d + m;
                    y[j + 16] = q1 as f32 * d + m;
                }
            }
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                for j in 0..32 {
                    y[j] = b[2 + j] as i8 as f32 * d;
                }
            }
            GgmlType::Q4K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let (scales, qs) = (&b[4..16], &b[16..144]);
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        y[64 * j + l] = d * sc1 as f32 * (q[l] & 0x0F) as f32 - dmin * m1 as f32;
                        y[64 * j + 32 + l] = d * sc2 as f32 * (q[l] >> 4) as f32 - dmin * m2 as f32;
                    }
                }
            }
            GgmlType::Q5K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
                for j in 0..4 {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        let lo = (q[l] & 0x0F) as f32 + if qh[l] & u1 != 0 { 16.0 } else { 0.0 };
                        let hi = (q[l] >> 4) as f32 + if qh[l] & u2 != 0 { 16.0 } else { 0.0 };
                        y[64 * j + l] = d * sc1 as f32 * lo - dmin * m1 as f32;
                        y[64 * j + 32 + l] = d * sc2 as f32 * hi - dmin * m2 as f32;
                    }
                }
            }
            GgmlType::Q6K => {
                let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], f16_at(b, 208));
                for n in 0..2 {
                    let (ql, qh, sc, y) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..], &mut y[128 * n..]);
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The architecture's config from GGUF metadata (`{arch}.*` keys).
pub fn config_from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let arch_name = g.meta("general.architecture").and_then(MetaValue::as_str).context("no general.architecture")?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "gemma3" => Arch::Gemma3,
        "clip" => bail!(
            "this is a vision projector (an mmproj file, architecture \"clip\"), not a language model: give keel the text model's GGUF"
        ),
        other => bail!("GGUF architecture \"{other}\" is not supported (llama, qwen2, qwen3, gemma3)"),
    };
    if let Some(t) = g.tensors.iter().find(|t| t.name.starts_with("v.") || t.name.starts_with("mm.")) {
        bail!(
            "tensor {} belongs to a vision tower: multimodal models are not supported; use the text model's GGUF",
            t.name
        );
    }
    let num = |key: &str| -> Result<u64> {
        g.meta(&format!("{arch_name}.{key}"))
            .and_then(MetaValue::as_u64)
            .with_context(|| format!("missing metadata {arch_name}.{key}"))
    };
    let float = |key: &str| g.meta(&format!("{arch_name}.{key}")).and_then(MetaValue::as_f64);
    if g.meta(&format!("{arch_name}.rope.scaling.type")).and_then(MetaValue::as_str).is_some_and(|t| t != "none")
        || g.tensor("rope_freqs.weight").is_some()
    {
        bail!("RoPE scaling in GGUF files is not supported yet");
    }
    let hidden = num("embedding_length")? as usize;
    let heads = num("attention.head_count")? as usize;
    ensure!(heads > 0, "{arch_name}.attention.head_count is 0");
    let embd = g.tensor("token_embd.weight").context("no token_embd.weight tensor")?;
    ensure!(
        embd.shape.len() == 2 && embd.shape[1] == hidden,
        "token_embd.weight has shape {:?}, expected [vocabulary, {arch_name}.embedding_length = {hidden}]",
        embd.shape
    );
    let num_layers = num("block_count")? as usize;
    let head_dim = num("attention.key_length").map(|d| d as usize).unwrap_or(hidden / heads);
    let (sliding_window, layer_kinds, rope_local_theta, query_pre_attn_scalar) = if arch == Arch::Gemma3 {
        let window = num("attention.sliding_window")? as usize;
        let kinds = GEMMA3_GGUF.layer_kinds(num_layers);
        (
            Some(window),
            kinds,
            Some(GEMMA3_GGUF.local_rope_theta),
            Some(GEMMA3_GGUF.attn_scalar(hidden, heads, head_dim)),
        )
    } else {
        (None, vec![LayerKind::Full; num_layers], None, None)
    };
    let config = ModelConfig {
        arch,
        hidden_size: hidden,
        num_layers,
        num_heads: heads,
        num_kv_heads: num("attention.head_count_kv").unwrap_or(heads as u64) as usize,
        head_dim,
        intermediate_size: num("feed_forward_length")? as usize,
        vocab_size: embd.shape[0],
        rms_norm_eps: float("attention.layer_norm_rms_epsilon").context("missing attention.layer_norm_rms_epsilon")?,
        rope_theta: float("rope.freq_base").unwrap_or(10000.0),
        rope_scaling: None,
        tie_word_embeddings: g.tensor("output.weight").is_none(),
        max_position_embeddings: num("context_length").unwrap_or(2048) as usize,
        sliding_window,
        layer_kinds,
        rope_local_theta,
        query_pre_attn_scalar,
        bos_token_id: g.meta("tokenizer.ggml.bos_token_id").and_then(MetaValue::as_u64).map(|v| v as u32),
        eos_token_id: g.meta("tokenizer.ggml.eos_token_id").and_then(MetaValue::as_u64).map(|v| v as u32),
    };
    config.validate()?;
    Ok(config)
}

/// What llama.cpp assumes of a `gemma3` GGUF rather than storing it, as its loader and converter
/// do: every 6th layer is global, the sliding layers' RoPE base is 10,000, the attention scale is
/// `1/√head_dim` (`1/√(hidden/heads)` for the 27B model), and every norm weight is stored with
/// Gemma's `+1` already added. Loading takes these values; exporting refuses a model that
/// differs from them, since llama.cpp would compute something else.
pub(crate) struct Gemma3Gguf {
    pub(crate) global_every: usize,
    pub(crate) local_rope_theta: f64,
}

pub(crate) const GEMMA3_GGUF: Gemma3Gguf = Gemma3Gguf { global_every: 6, local_rope_theta: 10_000.0 };

impl Gemma3Gguf {
    pub(crate) fn layer_kinds(&self, num_layers: usize) -> Vec<LayerKind> {
        (0..num_layers)
            .map(|i| if (i + 1) % self.global_every == 0 { LayerKind::Full } else { LayerKind::Sliding })
            .collect()
    }

    /// `query_pre_attn_scalar`: llama.cpp special-cases Gemma 3 27B (hidden 5376, 32 heads).
    pub(crate) fn attn_scalar(&self, hidden: usize, heads: usize, head_dim: usize) -> f64 {
        if (hidden, heads) == (5376, 32) {
            (hidden / heads) as f64
        } else {
            head_dim as f64
        }
    }
}

/// llama.cpp's name for a Hugging Face tensor name of an `arch` model.
pub(crate) fn gguf_name(arch: Arch, hf: &str) -> Option<String> {
    Some(match hf {
        "model.embed_tokens.weight" => "token_embd.weight".into(),
        "model.norm.weight" => "output_norm.weight".into(),
        "lm_head.weight" => "output.weight".into(),
        _ => {
            let rest = hf.strip_prefix("model.layers.")?;
            let (layer, part) = rest.split_once('.')?;
            let mapped = match part {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.q_proj.bias" => "attn_q.bias",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.k_proj.bias" => "attn_k.bias",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.v_proj.bias" => "attn_v.bias",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "self_attn.q_norm.weight" => "attn_q_norm.weight",
                "self_attn.k_norm.weight" => "attn_k_norm.weight",
                // Gemma names its norms by place; Llama's "post_attention" norm precedes the MLP.
                "post_attention_layernorm.weight" if arch == Arch::Gemma3 => "post_attention_norm.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
                "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                _ => return None,
            };
            format!("blk.{layer}.{mapped}")
        }
    })
}

/// llama.cpp's order of Q/K rows (made for its interleaved-pair RoPE): within each head, GGUF
/// row `2i + j` is Hugging Face row `j·d/2 + i`. Loading undoes it (`to_gguf` false); exporting
/// applies it (`to_gguf` true).
pub(crate) fn reorder_qk_rows(w: &[f32], heads: usize, cols: usize, to_gguf: bool) -> Vec<f32> {
    let rows = w.len() / cols;
    let (d, half) = (rows / heads, rows / heads / 2);
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let (gguf, hf) = ((h * d + 2 * i + j) * cols, (h * d + j * half + i) * cols);
                let (src, dst) = if to_gguf { (hf, gguf) } else { (gguf, hf) };
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

impl Transformer {
    /// Loads a GGUF model, dequantized to f32, with Hugging Face names and layouts.
    pub fn load_gguf(path: &Path) -> Result<Self> {
        Self::from_gguf(&GgufFile::open(path)?)
    }

    /// Loads an opened GGUF file. Every tensor is found and its shape checked before the
    /// weights are allocated, so their size is bounded by the file's.
    pub fn from_gguf(g: &GgufFile) -> Result<Self> {
        let path = &g.path;
        let config = config_from_gguf(g).with_context(|| format!("{}", path.display()))?;
        let layout = crate::params::ParamLayout::new(&config);
        let mut found = Vec::with_capacity(layout.tensors.len());
        for spec in &layout.tensors {
            let name = gguf_name(config.arch, &spec.name).with_context(|| format!("no GGUF name for {}", spec.name))?;
            let t = g
                .tensor(&name)
                .with_context(|| format!("{}: tensor {name} ({}) is missing", path.display(), spec.name))?;
            ensure!(
                t.shape == spec.shape,
                "{}: tensor {name} has shape {:?}, the metadata implies {:?}",
                path.display(),
                t.shape,
                spec.shape
            );
            found.push((name, t));
        }
        let permuted = config.arch == Arch::Llama;
        let norm_offset = config.arch.norm_offset();
        let mut model = Transformer::zeros(config);
        for (spec, (name, t)) in layout.tensors.iter().zip(found) {
            let mut w = g.dequantize(t);
            let c = &model.config;
            if norm_offset != 0.0 && spec.name.ends_with("norm.weight") {
                // GGUF holds Gemma's gain 1 + w; keel keeps transformers' w.
                w.iter_mut().for_each(|x| *x -= norm_offset);
            }
            if permuted && name.ends_with("attn_q.weight") {
                w = reorder_qk_rows(&w, c.num_heads, c.hidden_size, false);
            } else if permuted && name.ends_with("attn_k.weight") {
                w = reorder_qk_rows(&w, c.num_kv_heads, c.hidden_size, false);
            }
            model.params[spec.range.clone()].copy_from_slice(&w);
        }
        Ok(model)
    }
}
