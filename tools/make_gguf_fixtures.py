#!/usr/bin/env python3
"""Generate oracles for keel's GGUF reader and dequantizers.

Writes ``crates/keel-model/tests/fixtures/gguf/``:

* ``quants.gguf`` -- a GGUF v3 file (``gguf.GGUFWriter``, architecture
  ``test``) holding one ``[2, 512]`` tensor per type, named ``t_<type>``
  (``t_f32``, ``t_q4_k``, ...), plus metadata keys of every scalar type and a
  few arrays (``test.u32 = 7``, ``test.strings = ["a", "b"]``, ...).
  F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 hold seeded normal data quantized by
  ``gguf.quants.quantize``. The package cannot quantize Q4_K/Q5_K/Q6_K, so
  those hold seeded random bytes whose f16 super-block scales (``d``, and
  ``dmin`` where the type has one) are overwritten with values drawn from
  [-0.1, 0.1], which keeps every decoded value finite.
* ``quants_reference.safetensors`` -- for each tensor, under the same name,
  ``gguf.quants.dequantize`` of its bytes as f32 ``[2, 512]``.
* ``metadata.json`` -- the metadata written (key, GGUF type, value, in file
  order) and, per tensor, its ggml type name and id, shape as GGUF stores it
  (``ne``, fastest-varying first) and row-major (``[rows, cols]``), byte size,
  offset within the data section and how its bytes were made.

The output is a pure function of the constants below: rerunning rewrites
byte-identical files. Regenerate with::

    python tools/make_gguf_fixtures.py
"""

import json
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUFReader, GGUFValueType, GGUFWriter
from gguf import GGMLQuantizationType as QType
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "crates/keel-model/tests/fixtures/gguf"

ARCHITECTURE = "test"
ROWS, COLS = 2, 512  # a row holds two 256-element K-quant super-blocks
SEED = 5150
RANDOM_SCALE_BOUND = 0.1

# Types gguf.quants can quantize: filled with real quantized data.
QUANTIZED_TYPES = [QType.F32, QType.F16, QType.BF16, QType.Q8_0, QType.Q4_0, QType.Q4_1, QType.Q5_0, QType.Q5_1]
# Types it cannot: random blocks, with the byte offsets of each block's f16 scale fields.
RANDOM_BLOCK_SCALE_OFFSETS = {
    QType.Q4_K: (0, 2),  # d, dmin, scales[12], qs[128]
    QType.Q5_K: (0, 2),  # d, dmin, scales[12], qh[32], qs[128]
    QType.Q6_K: (208,),  # ql[128], qh[64], scales[16], d
}

# (key, GGUF value type, value, array element type or None); general.architecture comes first.
# Floats are exact in f32, so the JSON value is the stored value.
METADATA = [
    ("test.u8", GGUFValueType.UINT8, 200, None),
    ("test.i8", GGUFValueType.INT8, -100, None),
    ("test.u16", GGUFValueType.UINT16, 60000, None),
    ("test.i16", GGUFValueType.INT16, -30000, None),
    ("test.u32", GGUFValueType.UINT32, 7, None),
    ("test.i32", GGUFValueType.INT32, -42, None),
    ("test.f32", GGUFValueType.FLOAT32, -1.25, None),
    ("test.bool", GGUFValueType.BOOL, True, None),
    ("test.string", GGUFValueType.STRING, "héllo wörld ✓", None),
    ("test.u64", GGUFValueType.UINT64, 2**40 + 3, None),
    ("test.i64", GGUFValueType.INT64, -(2**40) - 5, None),
    ("test.f64", GGUFValueType.FLOAT64, 0.1, None),
    ("test.strings", GGUFValueType.ARRAY, ["a", "b"], GGUFValueType.STRING),
    ("test.i32s", GGUFValueType.ARRAY, [1, -2, 3], GGUFValueType.INT32),
    ("test.f32s", GGUFValueType.ARRAY, [0.5, -2.0, 1024.0], GGUFValueType.FLOAT32),
]


def tensor_name(qtype: QType) -> str:
    return f"t_{qtype.name.lower()}"


def quantized_bytes(qtype: QType, rng: np.random.Generator) -> np.ndarray:
    """Seeded N(0, 1) values quantized to `qtype`, as uint8 [ROWS, bytes per row]."""
    values = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    return quantize(values, qtype).view(np.uint8)


def random_block_bytes(qtype: QType, rng: np.random.Generator) -> np.ndarray:
    """Random blocks with finite, moderate f16 scales, as uint8 [ROWS, bytes per row]."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * COLS // block_size
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for offset in RANDOM_BLOCK_SCALE_OFFSETS[qtype]:
        scales = rng.uniform(-RANDOM_SCALE_BOUND, RANDOM_SCALE_BOUND, n_blocks).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(ROWS, -1)


def make_tensors() -> dict[QType, np.ndarray]:
    """Raw bytes per type; each type draws from its own stream so types are independent."""
    tensors = {}
    for qtype in QUANTIZED_TYPES:
        tensors[qtype] = quantized_bytes(qtype, np.random.default_rng([SEED, qtype.value]))
    for qtype in RANDOM_BLOCK_SCALE_OFFSETS:
        tensors[qtype] = random_block_bytes(qtype, np.random.default_rng([SEED, qtype.value]))
    return tensors


def write_gguf(path: Path, tensors: dict[QType, np.ndarray]) -> None:
    writer = GGUFWriter(path, ARCHITECTURE)
    for key, vtype, value, sub_type in METADATA:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    for qtype, raw in tensors.items():
        writer.add_tensor(tensor_name(qtype), raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def reference_values(tensors: dict[QType, np.ndarray]) -> dict[str, np.ndarray]:
    reference = {}
    for qtype, raw in tensors.items():
        values = dequantize(raw, qtype).astype(np.float32).reshape(ROWS, COLS)
        if not np.isfinite(values).all():
            raise AssertionError(f"{qtype.name} decodes to non-finite values")
        reference[tensor_name(qtype)] = np.ascontiguousarray(values)
    return reference


def describe_metadata() -> list[dict]:
    entries = [{"key": "general.architecture", "type": "STRING", "value": ARCHITECTURE}]
    for key, vtype, value, sub_type in METADATA:
        entry = {"key": key, "type": vtype.name, "value": value}
        if sub_type is not None:
            entry["element_type"] = sub_type.name
        entries.append(entry)
    return entries


def describe_tensors(path: Path, tensors: dict[QType, np.ndarray]) -> list[dict]:
    """Tensor facts as the written file reports them, checked against what was written."""
    reader = GGUFReader(path)
    by_name = {t.name: t for t in reader.tensors}
    described = []
    for qtype, raw in tensors.items():
        info = by_name[tensor_name(qtype)]
        ne = [int(n) for n in info.shape]
        stored = np.asarray(info.data).view(np.uint8).reshape(raw.shape)
        if QType(info.tensor_type) != qtype or ne != [COLS, ROWS] or not np.array_equal(stored, raw):
            raise AssertionError(f"{info.name} does not read back as written")
        described.append({
            "name": info.name,
            "ggml_type": qtype.name,
            "ggml_type_id": qtype.value,
            "ne": ne,
            "shape": [ROWS, COLS],
            "n_bytes": int(raw.nbytes),
            "data_offset": int(info.data_offset - reader.data_offset),
            "contents": "random_blocks" if qtype in RANDOM_BLOCK_SCALE_OFFSETS else "quantized",
        })
    return described


def check_metadata(path: Path, expected: list[dict]) -> None:
    reader = GGUFReader(path)
    read = [
        {"key": name, "value": field.contents()}
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    ]
    if [r["key"] for r in read] != [e["key"] for e in expected]:
        raise AssertionError(f"metadata keys read back as {[r['key'] for r in read]}")
    for got, want in zip(read, expected):
        if got["value"] != want["value"]:
            raise AssertionError(f"{want['key']} read back as {got['value']!r}, not {want['value']!r}")


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    gguf_path = OUT_DIR / "quants.gguf"
    tensors = make_tensors()
    write_gguf(gguf_path, tensors)
    save_file(reference_values(tensors), OUT_DIR / "quants_reference.safetensors")
    metadata = describe_metadata()
    check_metadata(gguf_path, metadata)
    summary = {
        "gguf_version": 3,
        "alignment": 32,
        "metadata": metadata,
        "tensors": describe_tensors(gguf_path, tensors),
    }
    (OUT_DIR / "metadata.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    for path in sorted(OUT_DIR.iterdir()):
        print(f"{path.stat().st_size:8d}  {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
