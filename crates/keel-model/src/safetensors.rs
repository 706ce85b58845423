//! Safetensors files: read (single file or a sharded index; f32, f16, bf16 widened to f32) and
//! write (f32, atomically).

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Element types keel reads; anything else is refused when the header is parsed.
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// IEEE half precision; widened to f32 on read.
    F16,
    /// bfloat16; widened to f32 on read.
    BF16,
    /// 64-bit signed integer, e.g. token ids in test data; never weights.
    I64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I64" => Dtype::I64,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I64 => 8,
        }
    }
}

/// Where one tensor lives.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    /// The element type.
    pub dtype: Dtype,
    /// Dimensions, rows first (row-major, as written by PyTorch).
    pub shape: Vec<usize>,
    file: usize,
    start: usize,
    end: usize,
}

/// The tensors of one safetensors file or of every shard of an index, memory-mapped.
pub struct SafeTensors {
    files: Vec<(PathBuf, Mmap)>,
    tensors: BTreeMap<String, TensorEntry>,
}

impl SafeTensors {
    /// Opens `model.safetensors`, `model.safetensors.index.json` (in a directory), or one file.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let single = path.join("model.safetensors");
            let index = path.join("model.safetensors.index.json");
            if single.exists() {
                return Self::open_files(&[single]);
            }
            if index.exists() {
                return Self::open_index(&index);
            }
            bail!("{} holds neither model.safetensors nor model.safetensors.index.json", path.display());
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::open_files(&[path.to_path_buf()])
    }

    /// A sharded checkpoint: every shard the index names must exist and hold the tensors listed
    /// for it.
    fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).with_context(|| format!("cannot read {}", index.display()))?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .with_context(|| format!("{} has no \"weight_map\"", index.display()))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<&str> = map.values().filter_map(Value::as_str).collect();
        shard_names.sort();
        shard_names.dedup();
        let shards: Vec<PathBuf> = shard_names.iter().map(|s| dir.join(s)).collect();
        for (shard, name) in shards.iter().zip(&shard_names) {
            ensure!(
                shard.exists(),
                "{} points at the shard {name}, which does not exist ({})",
                index.display(),
                shard.display()
            );
        }
        let st = Self::open_files(&shards)?;
        for (tensor, shard) in map {
            let shard = shard.as_str().unwrap_or_default();
            match st.tensors.get(tensor) {
                Some(e) if st.files[e.file].0.file_name().is_some_and(|f| f == shard) => {}
                Some(_) => bail!("{}: tensor {tensor} is not in the shard {shard} the index names", index.display()),
                None => bail!("{}: tensor {tensor} is missing from the shard {shard}", index.display()),
            }
        }
        Ok(st)
    }

    fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        let mut tensors = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            // SAFETY: the file is only read; keel does not modify weight files while they are open.
            let map = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
            for (name, entry) in
                parse_header(&map, i).with_context(|| format!("{} is not a valid safetensors file", path.display()))?
            {
                if tensors.insert(name.clone(), entry).is_some() {
                    bail!("tensor {name} appears twice (second time in {})", path.display());
                }
            }
            files.push((path.clone(), map));
        }
        Ok(SafeTensors { files, tensors })
    }

    /// Every tensor name, across all shards, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The entry of tensor `name`, if any shard holds it.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The file a tensor is stored in (for messages).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.tensors.get(name).map(|e| self.files[e.file].0.as_path())
    }

    /// Reads a floating-point tensor into `out`, widening f16/bf16; `out` must have its size.
    pub fn read_f32(&self, name: &str, out: &mut [f32]) -> Result<()> {
        let e = self.tensors.get(name).with_context(|| format!("no tensor named {name}"))?;
        let bytes = &self.files[e.file].1[e.start..e.end];
        let numel: usize = e.shape.iter().product(); // checked against the bytes in parse_header
        ensure!(out.len() == numel, "tensor {name} has {numel} elements, expected {}", out.len());
        match e.dtype {
            Dtype::F32 => out
                .iter_mut()
                .zip(bytes.chunks_exact(4))
                .for_each(|(o, b)| *o = f32::from_le_bytes(b.try_into().unwrap())),
            Dtype::F16 => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::BF16 => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dtype::I64 => bail!("tensor {name} holds integers (I64), not weights"),
        }
        Ok(())
    }

    /// Reads an integer tensor (I64), e.g. token ids of a test batch.
    pub fn read_i64(&self, name: &str) -> Result<Vec<i64>> {
        let e = self.tensors.get(name).with_context(|| format!("no tensor named {name}"))?;
        ensure!(e.dtype == Dtype::I64, "tensor {name} is {:?}, expected I64", e.dtype);
        Ok(self.files[e.file].1[e.start..e.end]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }

    /// Reads a floating-point tensor into a new vector.
    pub fn to_vec_f32(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.get(name).with_context(|| format!("no tensor named {name}"))?;
        // Checked when the header was read: the bytes of the file bound the element count.
        let numel = e.shape.iter().product();
        let mut out = vec![0.0; numel];
        self.read_f32(name, &mut out)?;
        Ok(out)
    }
}

fn parse_header(bytes: &[u8], file: usize) -> Result<Vec<(String, TensorEntry)>> {
    ensure!(bytes.len() >= 8, "the file is {} bytes long, shorter than the 8-byte header length", bytes.len());
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    ensure!(
        n <= bytes.len() - 8,
        "the header claims {n} bytes but the file has only {} after the length (truncated?)",
        bytes.len() - 8
    );
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).context("the header is not a JSON object")?;
    let data_len = bytes.len() - 8 - n;
    let mut out = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype_str =
            info.get("dtype").and_then(Value::as_str).with_context(|| format!("tensor {name}: no dtype"))?;
        let dtype = Dtype::parse(dtype_str)
            .with_context(|| format!("tensor {name}: dtype {dtype_str} is not supported (F32, F16, BF16, I64)"))?;
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(Value::as_array)
            .with_context(|| format!("tensor {name}: no shape"))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .with_context(|| format!("tensor {name}: the shape is not a list of sizes"))?;
        let offsets = info
            .get("data_offsets")
            .and_then(Value::as_array)
            .with_context(|| format!("tensor {name}: no data_offsets"))?;
        let (start, end) = match offsets.as_slice() {
            [a, b] => (a.as_u64().unwrap_or(u64::MAX) as usize, b.as_u64().unwrap_or(0) as usize),
            _ => bail!("tensor {name}: data_offsets must be [begin, end]"),
        };
        ensure!(
            start <= end && end <= data_len,
            "tensor {name}: bytes {start}..{end} lie beyond the {data_len} data bytes (truncated file?)"
        );
        let numel = crate::limits::numel(&shape, format_args!("tensor {name}"))?;
        ensure!(
            numel.checked_mul(dtype.size()) == Some(end - start),
            "tensor {name}: {} bytes stored for shape {shape:?} of {dtype:?}",
            end - start
        );
        out.push((name, TensorEntry { dtype, shape, file, start: start + 8 + n, end: end + 8 + n }));
    }
    refuse_overlaps(&out)?;
    Ok(out)
}

/// Tensors whose byte ranges overlap would load one tensor's bytes as another's weights.
fn refuse_overlaps(entries: &[(String, TensorEntry)]) -> Result<()> {
    let mut spans: Vec<&(String, TensorEntry)> = entries.iter().filter(|(_, e)| e.end > e.start).collect();
    spans.sort_by_key(|(_, e)| e.start);
    for pair in spans.windows(2) {
        let ((a, ea), (b, eb)) = (pair[0], pair[1]);
        ensure!(
            ea.end <= eb.start,
            "tensors {a} and {b} share bytes (data_offsets overlap: a corrupt or crafted file)"
        );
    }
    Ok(())
}

/// Writes f32 tensors as one safetensors file, atomically (temporary file, fsync, rename).
pub fn write_f32(path: &Path, tensors: &[(&str, &[usize], &[f32])], metadata: &HashMap<String, String>) -> Result<()> {
    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        ensure!(
            shape.iter().product::<usize>() == data.len(),
            "tensor {name}: shape {shape:?} does not match {} values",
            data.len()
        );
        let end = offset + data.len() * 4;
        header
            .insert((*name).into(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut json = serde_json::to_vec(&Value::Object(header))?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let tmp = path.with_extension("safetensors.tmp");
    let result = (|| -> Result<()> {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        f.write_all(&(json.len() as u64).to_le_bytes())?;
        f.write_all(&json)?;
        for (_, _, data) in tensors {
            for chunk in data.chunks(1 << 16) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                f.write_all(&bytes)?;
            }
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
