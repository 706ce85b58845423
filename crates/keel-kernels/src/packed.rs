//! Linear layers with weights packed once, for decoding a few rows at a time on frozen weights.
//!
//! A general GEMM (OpenBLAS) repacks the weight on every call. With a handful of rows (one token
//! for each of 16 decoding sequences) that copy costs more than the product: in an IFEval run
//! OpenBLAS's packing took 39% of the time against 32% in its kernel. A frozen weight can be
//! packed once instead: columns of `Wᵀ` in panels of [`NR`], each panel `[in × NR]` contiguous, so
//! the micro-kernel streams it while broadcasting activations straight from their rows.
//!
//! The micro-kernel keeps an `MR × NR` tile of the output in AVX2 registers (12 of the 16) and
//! runs on x86-64 with AVX2, FMA and F16C; elsewhere [`PackedLinear::forward`] falls back to the
//! unpacked product. Each output element sums its inputs in fixed blocks of `KC` (256), so the
//! result does not depend on the thread count.
//!
//! Panels can hold 16-bit values ([`Storage`]): decoding streams every weight once per step, so
//! on a machine whose memory bandwidth bounds it, half the bytes is close to twice the speed. The
//! kernel widens them to f32 as it loads and accumulates in f32. The unpacked weight given to
//! [`PackedLinear::forward`] must then hold the same rounded values (see
//! `Transformer::round_matrices`), so that the fallback computes the same product.

use crate::gemm::gemm;
use rayon::prelude::*;

/// Output columns per panel (two AVX2 registers of f32).
pub const NR: usize = 16;
/// Rows per micro-kernel tile.
const MR: usize = 6;
/// Inputs per block: a panel's block is `KC × NR` floats (16 KiB), within L1.
const KC: usize = 256;
/// Rows per block: `MC × KC` floats of x (120 KiB) stay in L2 while the panels pass.
const MC: usize = 120;

/// How packed weights are stored; products always accumulate in f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// 4 bytes per weight, exact.
    #[default]
    F32,
    /// IEEE half precision: 11 significant bits, |w| up to 65504.
    F16,
    /// bfloat16: f32's range, 8 significant bits.
    Bf16,
}

impl Storage {
    /// `v` rounded to this storage (to nearest, ties to even), as f32.
    pub fn round(self, v: f32) -> f32 {
        match self {
            Storage::F32 => v,
            Storage::F16 => half::f16::from_f32(v).to_f32(),
            Storage::Bf16 => half::bf16::from_f32(v).to_f32(),
        }
    }

    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        if self == Storage::F32 {
            4
        } else {
            2
        }
    }
}

/// A value panels hold.
trait PanelValue: Copy + Default + Send + Sync {
    const STORAGE: Storage;
    fn from_f32(v: f32) -> Self;
    /// `to[i] = from[i]` as f32.
    fn widen(from: &[Self], to: &mut [f32]);
}

impl PanelValue for f32 {
    const STORAGE: Storage = Storage::F32;
    fn from_f32(v: f32) -> Self {
        v
    }
    fn widen(from: &[Self], to: &mut [f32]) {
        to.copy_from_slice(from);
    }
}

impl PanelValue for half::f16 {
    const STORAGE: Storage = Storage::F16;
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn widen(from: &[Self], to: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        from.convert_to_f32_slice(to);
    }
}

impl PanelValue for half::bf16 {
    const STORAGE: Storage = Storage::Bf16;
    fn from_f32(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    fn widen(from: &[Self], to: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        from.convert_to_f32_slice(to);
    }
}

/// `[⌈out/NR⌉ × in × NR]`: panel `p`, row `k` holds `W[p·NR + j][k]` for `j < NR`, zero past
/// `out`.
enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    Bf16(Vec<half::bf16>),
}

/// A `[out × in]` weight (Hugging Face layout) packed for `x·Wᵀ`.
pub struct PackedLinear {
    n_in: usize,
    n_out: usize,
    panels: Panels,
}

fn pack_panels<T: PanelValue>(w: &[f32], n_in: usize, n_out: usize) -> Vec<T> {
    let mut panels = vec![T::default(); n_out.div_ceil(NR) * n_in * NR];
    panels.par_chunks_mut(n_in * NR).enumerate().for_each(|(p, panel)| {
        for j in 0..NR.min(n_out - p * NR) {
            let row = &w[(p * NR + j) * n_in..(p * NR + j + 1) * n_in];
            for (k, &v) in row.iter().enumerate() {
                panel[k * NR + j] = T::from_f32(v);
            }
        }
    });
    panels
}

impl PackedLinear {
    /// Packs `w`, `[n_out × n_in]` row-major, in f32.
    pub fn pack(w: &[f32], n_in: usize, n_out: usize) -> Self {
        Self::pack_as(w, n_in, n_out, Storage::F32)
    }

    /// Packs `w` rounded to `storage`.
    pub fn pack_as(w: &[f32], n_in: usize, n_out: usize, storage: Storage) -> Self {
        assert_eq!(w.len(), n_in * n_out, "packing a {n_out}x{n_in} weight from {} values", w.len());
        let panels = match storage {
            Storage::F32 => Panels::F32(pack_panels(w, n_in, n_out)),
            Storage::F16 => Panels::F16(pack_panels(w, n_in, n_out)),
            Storage::Bf16 => Panels::Bf16(pack_panels(w, n_in, n_out)),
        };
        PackedLinear { n_in, n_out, panels }
    }

    /// Bytes the panels take.
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(p) => p.len() * 4,
            Panels::F16(p) => p.len() * 2,
            Panels::Bf16(p) => p.len() * 2,
        }
    }

    /// `y[rows × out] = x[rows × in] · Wᵀ`, or `y += x · Wᵀ` when `accumulate` (a residual
    /// connection added in the same pass). `w` is the unpacked weight, used where AVX2 is missing.
    pub fn forward(&self, y: &mut [f32], x: &[f32], w: &[f32], accumulate: bool) {
        let rows = x.len() / self.n_in;
        assert!(
            x.len() == rows * self.n_in && y.len() == rows * self.n_out && w.len() == self.n_in * self.n_out,
            "packed linear {}→{}: x has {} values, y {}, w {}",
            self.n_in,
            self.n_out,
            x.len(),
            y.len(),
            w.len()
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = Kernel::detect() {
            return match &self.panels {
                Panels::F32(p) => self.forward_simd(kernel, p, y, x, rows, accumulate),
                Panels::F16(p) => self.forward_simd(kernel, p, y, x, rows, accumulate),
                Panels::Bf16(p) => self.forward_simd(kernel, p, y, x, rows, accumulate),
            };
        }
        gemm(false, true, rows, self.n_out, self.n_in, x, w, if accumulate { 1.0 } else { 0.0 }, y);
    }

    #[cfg(target_arch = "x86_64")]
    fn forward_simd<T: PanelValue>(
        &self,
        kernel: Kernel,
        all: &[T],
        y: &mut [f32],
        x: &[f32],
        rows: usize,
        accumulate: bool,
    ) {
        let (n_in, n_out) = (self.n_in, self.n_out);
        let panels_n = n_out.div_ceil(NR);
        // Each task owns a run of panels (a band of output columns) and all rows.
        let serial = rows * n_in * n_out < 1 << 18 || rayon::current_thread_index().is_some();
        let per_task = if serial { panels_n } else { panels_n.div_ceil(rayon::current_num_threads()) };
        let y_ptr = &crate::gemm::SendPtr(y.as_mut_ptr());
        // 16-bit panels are widened as the kernel loads them; a block that several row tiles
        // pass over is widened once into `wide` instead, not once per tile.
        let (mr, per_tile) = (kernel.rows(), kernel.panels());
        let widen_block = T::STORAGE != Storage::F32 && rows > mr;
        (0..panels_n.div_ceil(per_task)).into_par_iter().for_each(|task| {
            let panels = task * per_task..((task + 1) * per_task).min(panels_n);
            let mut wide = if widen_block { vec![0f32; per_tile * KC * NR] } else { Vec::new() };
            for k0 in (0..n_in).step_by(KC) {
                let kc = KC.min(n_in - k0);
                for r0 in (0..rows).step_by(MC) {
                    let mc = MC.min(rows - r0);
                    // Tiles of equal height: 16 rows are two tiles of 8, not 12 and 4.
                    let tile_h = mc.div_ceil(mc.div_ceil(mr));
                    for p in panels.clone().step_by(per_tile) {
                        let np = per_tile.min(panels.end - p);
                        let panel = &all[(p * n_in + k0) * NR..];
                        // The tiles over a panel block also pull the next blocks towards L1, a
                        // line per input, each tile its share of the inputs: the weights stream
                        // while every tile computes, not only the first.
                        let next = if p + np < panels.end { p + np } else { p };
                        let prefetch = all[(next * n_in + k0) * NR..].as_ptr();
                        let cols = (np * NR).min(n_out - p * NR);
                        if widen_block {
                            for j in 0..np {
                                let from = &panel[j * n_in * NR..j * n_in * NR + kc * NR];
                                T::widen(from, &mut wide[j * KC * NR..j * KC * NR + kc * NR]);
                            }
                        }
                        let tiles = mc.div_ceil(tile_h);
                        for (t, r) in (r0..r0 + mc).step_by(tile_h).enumerate() {
                            let pf = Prefetch { at: prefetch, from: t * kc / tiles, to: (t + 1) * kc / tiles };
                            let add = accumulate || k0 > 0;
                            // SAFETY: the kernel's features were detected by the caller. The tile reads
                            // rows r..r+tile_h (clipped to the block) of x at inputs k0..k0+kc, and
                            // writes columns p·NR..p·NR+cols of those rows of y, which no other
                            // task writes (tasks own disjoint panels).
                            unsafe {
                                let out = y_ptr.0.add(r * n_out + p * NR);
                                let x = x.as_ptr().add(r * n_in + k0);
                                let tile_rows = tile_h.min(r0 + mc - r);
                                if widen_block {
                                    let (panel, stride, prefetch) = (wide.as_ptr(), KC * NR, Prefetch::NONE);
                                    let tile =
                                        Tile { x, ld_x: n_in, kc, panel, panel_stride: stride, panels: np, prefetch };
                                    tile.run(kernel, tile_rows, out, n_out, cols, add);
                                } else {
                                    let (panel, stride) = (panel.as_ptr(), n_in * NR);
                                    let tile = Tile {
                                        x,
                                        ld_x: n_in,
                                        kc,
                                        panel,
                                        panel_stride: stride,
                                        panels: np,
                                        prefetch: pf,
                                    };
                                    tile.run(kernel, tile_rows, out, n_out, cols, add);
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}

/// The micro-kernel a machine runs.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// 6 rows × 16 outputs in AVX2 registers.
    Avx2,
    /// Up to 12 rows × 32 outputs (two panels) in AVX-512 registers: twice the multiplies per
    /// instruction of AVX2, and 14 loads for 24 multiplies where one panel of 16 rows took 17
    /// for 16.
    Avx512,
}

#[cfg(target_arch = "x86_64")]
impl Kernel {
    fn detect() -> Option<Kernel> {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("fma") && has!("f16c")) {
            return None;
        }
        // KEEL_PACKED_KERNEL=avx2 keeps the AVX2 kernel on an AVX-512 machine (to compare them).
        let avx2_asked = std::env::var("KEEL_PACKED_KERNEL").is_ok_and(|v| v == "avx2");
        Some(if has!("avx512f") && !avx2_asked { Kernel::Avx512 } else { Kernel::Avx2 })
    }

    /// Rows per tile.
    fn rows(self) -> usize {
        match self {
            Kernel::Avx2 => MR,
            Kernel::Avx512 => 12,
        }
    }

    /// Panels per tile.
    fn panels(self) -> usize {
        match self {
            Kernel::Avx2 => 1,
            Kernel::Avx512 => 2,
        }
    }
}

/// One micro-kernel call: `rows` rows of x (stride `ld_x`) times `panels` adjacent panel blocks
/// (`panel_stride` apart), over `kc` inputs.
#[cfg(target_arch = "x86_64")]
struct Tile<T> {
    x: *const f32,
    ld_x: usize,
    kc: usize,
    panel: *const T,
    panel_stride: usize,
    panels: usize,
    /// Panel blocks (`panels` of them, `panel_stride` apart) to prefetch alongside.
    prefetch: Prefetch<T>,
}

/// The lines of inputs `from..to` of the panel blocks at `at` (null: none).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Prefetch<T> {
    at: *const T,
    from: usize,
    to: usize,
}

#[cfg(target_arch = "x86_64")]
impl<T> Prefetch<T> {
    const NONE: Self = Prefetch { at: std::ptr::null(), from: 0, to: 0 };
}

#[cfg(target_arch = "x86_64")]
impl<T: PanelValue> Tile<T> {
    /// Writes the `rows × NR` tile (its first `cols` columns) to `out`, or adds it there.
    ///
    /// # Safety
    /// `kernel`'s features must be available; `x` must hold `rows` rows of `kc` values, `panel`
    /// (and a non-null `prefetch`) `kc × NR` values, and `out` `rows` rows (stride `ld_out`) of
    /// `cols`.
    unsafe fn run(&self, kernel: Kernel, rows: usize, out: *mut f32, ld_out: usize, cols: usize, accumulate: bool) {
        match kernel {
            Kernel::Avx2 => self.run_avx2(rows, out, ld_out, cols, accumulate),
            Kernel::Avx512 => self.run_avx512(rows, out, ld_out, cols, accumulate),
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run_avx2(&self, rows: usize, out: *mut f32, ld_out: usize, cols: usize, accumulate: bool) {
        match rows {
            6 => self.rows::<6>(out, ld_out, cols, accumulate),
            5 => self.rows::<5>(out, ld_out, cols, accumulate),
            4 => self.rows::<4>(out, ld_out, cols, accumulate),
            3 => self.rows::<3>(out, ld_out, cols, accumulate),
            2 => self.rows::<2>(out, ld_out, cols, accumulate),
            _ => self.rows::<1>(out, ld_out, cols, accumulate),
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn run_avx512(&self, rows: usize, out: *mut f32, ld_out: usize, cols: usize, accumulate: bool) {
        macro_rules! dispatch {
            ($p:literal: $($r:literal)*) => {
                match rows {
                    $($r => self.rows512::<$r, $p>(out, ld_out, cols, accumulate),)*
                    _ => self.rows512::<1, $p>(out, ld_out, cols, accumulate),
                }
            };
        }
        if self.panels == 2 {
            dispatch!(2: 12 11 10 9 8 7 6 5 4 3 2)
        } else {
            dispatch!(1: 12 11 10 9 8 7 6 5 4 3 2)
        }
    }

    /// The AVX-512 tile: `P` 16-wide registers per row hold that row's outputs of `P` panels.
    /// Each output still sums its inputs in order, so the tile's shape does not change the bits.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    #[inline]
    unsafe fn rows512<const R: usize, const P: usize>(
        &self,
        out: *mut f32,
        ld_out: usize,
        cols: usize,
        accumulate: bool,
    ) {
        use std::arch::x86_64::*;
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        for k in 0..self.kc {
            if (self.prefetch.from..self.prefetch.to).contains(&k) {
                // The next tile may hold fewer panels than P; a prefetch past the weights is a
                // harmless hint, and wrapping_add keeps the address computation defined.
                for j in 0..P {
                    let line = self.prefetch.at.wrapping_add(j * self.panel_stride + k * NR);
                    _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                }
            }
            let b: [__m512; P] = std::array::from_fn(|j| {
                let p = self.panel.add(j * self.panel_stride + k * NR);
                match T::STORAGE {
                    Storage::F32 => _mm512_loadu_ps(p as *const f32),
                    Storage::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
                    Storage::Bf16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                        _mm256_loadu_si256(p as *const __m256i),
                    ))),
                }
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*self.x.add(r * self.ld_x + k));
                for j in 0..P {
                    acc[j] = _mm512_fmadd_ps(a, b[j], acc[j]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (j, &acc) in acc.iter().enumerate() {
                let dst = out.add(r * ld_out + j * NR);
                let n = cols.saturating_sub(j * NR).min(NR);
                let mask: __mmask16 = if n == NR { 0xffff } else { (1u16 << n) - 1 };
                let sum = if accumulate { _mm512_add_ps(acc, _mm512_maskz_loadu_ps(mask, dst)) } else { acc };
                _mm512_mask_storeu_ps(dst, mask, sum);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn rows<const R: usize>(&self, out: *mut f32, ld_out: usize, cols: usize, accumulate: bool) {
        use std::arch::x86_64::*;
        // Eight panel values at `p`, widened to f32 (the match is on a constant: one arm remains).
        macro_rules! load8 {
            ($p:expr) => {
                match T::STORAGE {
                    Storage::F32 => _mm256_loadu_ps($p as *const f32),
                    Storage::F16 => _mm256_cvtph_ps(_mm_loadu_si128($p as *const __m128i)),
                    Storage::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                        _mm_loadu_si128($p as *const __m128i),
                    ))),
                }
            };
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for k in 0..self.kc {
            if (self.prefetch.from..self.prefetch.to).contains(&k) {
                _mm_prefetch::<_MM_HINT_T0>(self.prefetch.at.add(k * NR) as *const i8);
            }
            let b0 = load8!(self.panel.add(k * NR));
            let b1 = load8!(self.panel.add(k * NR + 8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = _mm256_broadcast_ss(&*self.x.add(r * self.ld_x + k));
                acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let dst = out.add(r * ld_out);
            if cols == NR {
                let (mut lo, mut hi) = (acc[0], acc[1]);
                if accumulate {
                    lo = _mm256_add_ps(lo, _mm256_loadu_ps(dst));
                    hi = _mm256_add_ps(hi, _mm256_loadu_ps(dst.add(8)));
                }
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            } else {
                let mut buf = [0.0f32; NR];
                _mm256_storeu_ps(buf.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(buf.as_mut_ptr().add(8), acc[1]);
                for (j, &v) in buf[..cols].iter().enumerate() {
                    *dst.add(j) = if accumulate { *dst.add(j) + v } else { v };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], n_in: usize, n_out: usize) -> Vec<f32> {
        let rows = x.len() / n_in;
        let mut y = vec![0.0f32; rows * n_out];
        for r in 0..rows {
            for o in 0..n_out {
                y[r * n_out + o] =
                    (0..n_in).map(|k| x[r * n_in + k] as f64 * w[o * n_in + k] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    #[test]
    fn packed_forward_equals_the_plain_product_for_ragged_shapes() {
        // Rows and outputs off the tile sizes, inputs over two KC blocks, rows over two MC blocks,
        // and products big enough to split over the threads.
        for (rows, n_in, n_out) in [(1, 5, 3), (7, 33, 17), (16, 576, 200), (13, 300, 48), (130, 96, 40), (33, 64, 29)]
        {
            let x: Vec<f32> = (0..rows * n_in).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n_out * n_in).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            for storage in [Storage::F32, Storage::F16, Storage::Bf16] {
                // A 16-bit panel multiplies the weight rounded to it; the fallback gets that one.
                let w: Vec<f32> = w.iter().map(|&v| storage.round(v)).collect();
                let want = naive(&x, &w, n_in, n_out);
                let packed = PackedLinear::pack_as(&w, n_in, n_out, storage);
                assert_eq!(packed.bytes(), n_out.div_ceil(NR) * NR * n_in * storage.bytes());
                let mut y = vec![f32::NAN; rows * n_out];
                packed.forward(&mut y, &x, &w, false);
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{storage:?} {rows}x{n_in}x{n_out} [{i}]: {a} vs {b}"
                    );
                }
                // The AVX2 kernel too, where the machine would pick AVX-512.
                #[cfg(target_arch = "x86_64")]
                if Kernel::detect() == Some(Kernel::Avx512) {
                    let mut y2 = vec![f32::NAN; rows * n_out];
                    match &packed.panels {
                        Panels::F32(p) => packed.forward_simd(Kernel::Avx2, p, &mut y2, &x, rows, false),
                        Panels::F16(p) => packed.forward_simd(Kernel::Avx2, p, &mut y2, &x, rows, false),
                        Panels::Bf16(p) => packed.forward_simd(Kernel::Avx2, p, &mut y2, &x, rows, false),
                    }
                    // Both tiles sum each output's inputs in the same order: the same bits.
                    for (i, (a, b)) in y2.iter().zip(&y).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "AVX2 against AVX-512, {storage:?} [{i}]: {a} vs {b}");
                    }
                }
                // Accumulating adds the product to what y held.
                let mut acc: Vec<f32> = (0..rows * n_out).map(|i| i as f32).collect();
                packed.forward(&mut acc, &x, &w, true);
                for (i, (a, b)) in acc.iter().zip(&want).enumerate() {
                    assert!(
                        (a - (b + i as f32)).abs() <= 1e-4 * (1.0 + a.abs()),
                        "{storage:?} accumulate [{i}]: {a} vs {}",
                        b + i as f32
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_to_16_bits_is_to_nearest_even() {
        // 1 + 2⁻¹¹ lies halfway between two f16 values (1 and 1 + 2⁻¹⁰): ties go to the even one.
        assert_eq!(Storage::F16.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(Storage::F16.round(1.0 + 3.0 * 2f32.powi(-11)), 1.0 + 2.0 * 2f32.powi(-10));
        assert_eq!(Storage::Bf16.round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(Storage::Bf16.round(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2.0 * 2f32.powi(-7));
        assert_eq!(Storage::F16.round(1e6), f32::INFINITY, "beyond f16's range");
        let big = Storage::Bf16.round(1e30);
        assert!(big.is_finite() && (big / 1e30 - 1.0).abs() < 2f32.powi(-8), "bf16 keeps f32's range: {big}");
    }
}
