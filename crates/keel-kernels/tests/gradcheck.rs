//! Every kernel's backward against central finite differences of its forward, in f64.
//!
//! Each check builds a scalar `L = Σ r ⊙ output` with random `r`, runs the kernel's backward with
//! `dout = r`, and compares every input gradient with `(L(x+h) − L(x−h)) / 2h`.

use keel_kernels::adamw::{adamw_update, AdamWHyper};
use keel_kernels::attention::{attention_backward, attention_forward, AttnShape};
use keel_kernels::clip::{clip_global_norm, global_norm};
use keel_kernels::cross_entropy::{cross_entropy_backward, cross_entropy_forward, IGNORE};
use keel_kernels::embedding::{embedding_backward, embedding_forward};
use keel_kernels::glu::{glu_backward, glu_forward, Gate};
use keel_kernels::linear::{linear_backward, linear_forward};
use keel_kernels::lora::{lora_backward, lora_forward};
use keel_kernels::rmsnorm::{rmsnorm_backward, rmsnorm_forward};
use keel_kernels::rope::RopeTable;

/// A small deterministic generator (SplitMix64) so the tests need no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| (2.0 * self.next() - 1.0) * scale).collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Compares `analytic` with central differences of `loss` around `x`.
fn check(name: &str, x: &[f64], analytic: &[f64], loss: impl Fn(&[f64]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let h = 1e-5;
    let mut xp = x.to_vec();
    let mut worst = 0.0f64;
    let scale = analytic.iter().fold(1e-3f64, |m, g| m.max(g.abs()));
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let up = loss(&xp);
        xp[i] = x[i] - h;
        let down = loss(&xp);
        xp[i] = x[i];
        let fd = (up - down) / (2.0 * h);
        worst = worst.max((fd - analytic[i]).abs() / scale);
    }
    assert!(worst < 1e-6, "{name}: finite differences disagree, worst relative error {worst:.3e}");
}

#[test]
fn embedding_backward_matches_finite_differences() {
    let mut rng = Rng(1);
    let (vocab, dim, ids) = (7, 5, vec![3u32, 0, 3, 6]);
    let table = rng.vec(vocab * dim, 1.0);
    let r = rng.vec(ids.len() * dim, 1.0);
    let loss = |t: &[f64]| {
        let mut out = vec![0.0; ids.len() * dim];
        embedding_forward(&mut out, t, &ids, dim);
        dot(&out, &r)
    };
    let mut dtable = vec![0.0; vocab * dim];
    embedding_backward(&mut dtable, &r, &ids, dim);
    check("embedding", &table, &dtable, loss);
}

/// Both gain conventions: `w` (Llama) and `1 + w` (Gemma).
#[test]
fn rmsnorm_backward_matches_finite_differences() {
    let mut rng = Rng(2);
    let (rows, dim, eps) = (70, 6, 1e-5); // more than one reduction chunk of rows
    let (x, w, r) = (rng.vec(rows * dim, 2.0), rng.vec(dim, 1.5), rng.vec(rows * dim, 1.0));
    for offset in [0.0, 1.0] {
        let fwd = |x: &[f64], w: &[f64]| {
            let (mut out, mut rstd) = (vec![0.0; rows * dim], vec![0.0; rows]);
            rmsnorm_forward(&mut out, &mut rstd, x, w, offset, eps);
            (dot(&out, &r), rstd, out)
        };
        let (_, rstd, out) = fwd(&x, &w);
        let ms = x[..dim].iter().map(|v| v * v).sum::<f64>() / dim as f64;
        let want = (offset + w[1]) * x[1] / (ms + eps).sqrt();
        assert!((out[1] - want).abs() < 1e-12, "offset {offset}: the gain is offset + w");
        let (mut dx, mut dw) = (vec![0.5; rows * dim], vec![0.25; dim]);
        rmsnorm_backward(&mut dx, Some(&mut dw), &r, &x, &w, offset, &rstd);
        // The backward accumulates: subtract what the buffers held before.
        dx.iter_mut().for_each(|g| *g -= 0.5);
        dw.iter_mut().for_each(|g| *g -= 0.25);
        check(&format!("rmsnorm dx (offset {offset})"), &x, &dx, |x| fwd(x, &w).0);
        check(&format!("rmsnorm dw (offset {offset})"), &w, &dw, |w| fwd(&x, w).0);
    }
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut rng = Rng(3);
    let (rows, n_in, n_out) = (9, 7, 5);
    let (x, w, b, r) =
        (rng.vec(rows * n_in, 1.0), rng.vec(n_out * n_in, 1.0), rng.vec(n_out, 1.0), rng.vec(rows * n_out, 1.0));
    let fwd = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; rows * n_out];
        linear_forward(&mut y, x, w, Some(b), n_in, n_out);
        dot(&y, &r)
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; rows * n_in], vec![0.0; n_out * n_in], vec![0.0; n_out]);
    linear_backward(Some(&mut dx), false, Some(&mut dw), Some(&mut db), &r, &x, &w, n_in, n_out);
    check("linear dx", &x, &dx, |x| fwd(x, &w, &b));
    check("linear dw", &w, &dw, |w| fwd(&x, w, &b));
    check("linear db", &b, &db, |b| fwd(&x, &w, b));
}

#[test]
fn rope_backward_matches_finite_differences_and_rotates_half() {
    let mut rng = Rng(4);
    let (heads, d) = (3, 8);
    let positions = vec![0u32, 5, 2, 9];
    let inv_freq: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32)).collect();
    let table = RopeTable::<f64>::new(&inv_freq, 16);
    let (x, r) = (rng.vec(positions.len() * heads * d, 1.0), rng.vec(positions.len() * heads * d, 1.0));
    let fwd = |x: &[f64]| {
        let mut y = x.to_vec();
        table.apply(&mut y, &positions, heads, false);
        dot(&y, &r)
    };
    let mut dx = r.clone();
    table.apply(&mut dx, &positions, heads, true);
    check("rope", &x, &dx, fwd);
    // Rotate-half pairing: element 1 pairs with element 1 + d/2, by angle pos·inv_freq[1].
    let mut y = x.clone();
    table.apply(&mut y, &positions, heads, false);
    let (tok, i) = (1, 1);
    let angle = (positions[tok] as f32 * inv_freq[i]) as f64;
    let (a, b) = (x[tok * heads * d + i], x[tok * heads * d + i + d / 2]);
    assert!((y[tok * heads * d + i] - (a * angle.cos() - b * angle.sin())).abs() < 1e-12);
    assert!((y[tok * heads * d + i + d / 2] - (b * angle.cos() + a * angle.sin())).abs() < 1e-12);
}

#[test]
fn glu_backward_matches_finite_differences() {
    let mut rng = Rng(5);
    let n = 40;
    let (g, u, r) = (rng.vec(n, 3.0), rng.vec(n, 2.0), rng.vec(n, 1.0));
    for gate in [Gate::Silu, Gate::GeluTanh] {
        let fwd = |g: &[f64], u: &[f64]| {
            let mut h = vec![0.0; n];
            glu_forward(gate, &mut h, g, u);
            (dot(&h, &r), h)
        };
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        glu_backward(gate, &mut dg, &mut du, &r, &g, &u);
        check(&format!("{gate:?} dg"), &g, &dg, |g| fwd(g, &u).0);
        check(&format!("{gate:?} du"), &u, &du, |u| fwd(&g, u).0);
        // The activations' own formulas (PyTorch's silu and tanh GELU).
        let h = fwd(&g, &u).1;
        for i in 0..n {
            let x = g[i];
            let act = match gate {
                Gate::Silu => x / (1.0 + (-x).exp()),
                Gate::GeluTanh => {
                    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
                }
            };
            assert!((h[i] - act * u[i]).abs() < 1e-12, "{gate:?}({x})");
        }
    }
}

fn attention_case(batch: usize) {
    let mut rng = Rng(6 + batch as u64);
    let s = AttnShape { batch, seq: 6, heads: 4, kv_heads: 2, head_dim: 3, scale: 0.37, window: None };
    let n = s.batch * s.seq;
    // Row 0 full; row 1 right-padded; row 2 two packed sequences behind left padding; row 3 a
    // shared prefix (segment P) followed by two continuations of it.
    let (p0, c1, c2) = (1 << 16, (1 << 16) | 1, (1 << 16) | 2);
    let segments: Vec<u32> = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [0, 1, 1, 2, 2, 2], [p0, p0, c1, c1, c2, c2]]
        .iter()
        .take(batch)
        .flatten()
        .copied()
        .collect();
    let positions: Vec<u32> = (0..n as u32).map(|i| i % s.seq as u32).collect();
    let (q, k, v) = (rng.vec(n * 12, 1.0), rng.vec(n * 6, 1.0), rng.vec(n * 6, 1.0));
    let r = rng.vec(n * 12, 1.0);
    let fwd = |q: &[f64], k: &[f64], v: &[f64]| {
        let (mut out, mut probs) = (vec![0.0; n * 12], vec![0.0; s.probs_len()]);
        attention_forward(&mut out, &mut probs, q, k, v, &segments, &positions, s);
        (dot(&out, &r), out, probs)
    };
    let (_, out, probs) = fwd(&q, &k, &v);
    let (mut dq, mut dk, mut dv) = (vec![9.0; n * 12], vec![9.0; n * 6], vec![9.0; n * 6]);
    let mut scratch = vec![0.0; s.scratch_len()];
    attention_backward(&mut dq, &mut dk, &mut dv, &mut scratch, &r, &probs, &q, &k, &v, s);
    check("attention dq", &q, &dq, |q| fwd(q, &k, &v).0);
    check("attention dk", &k, &dk, |k| fwd(&q, k, &v).0);
    check("attention dv", &v, &dv, |v| fwd(&q, &k, v).0);
    if batch >= 3 {
        // Padding queries output zeros; packed segment 2 never sees segment 1.
        let row = |b: usize, t: usize| &out[(b * s.seq + t) * 12..(b * s.seq + t + 1) * 12];
        assert!(row(2, 0).iter().all(|&x| x == 0.0) && row(1, 4).iter().all(|&x| x == 0.0));
        let p = |b: usize, h: usize, i: usize, j: usize| probs[((b * s.heads + h) * s.seq + i) * s.seq + j];
        assert!(p(2, 1, 3, 1) == 0.0 && p(2, 1, 3, 2) == 0.0 && p(2, 1, 3, 3) > 0.0);
        assert!(p(0, 0, 2, 3) == 0.0, "causal: token 2 must not see token 3");
    }
    if batch == 4 {
        // The second continuation sees the prefix and itself, never the first continuation.
        let p = |h: usize, i: usize, j: usize| probs[((3 * s.heads + h) * s.seq + i) * s.seq + j];
        assert!(p(2, 5, 0) > 0.0 && p(2, 5, 1) > 0.0 && p(2, 5, 4) > 0.0);
        assert!(p(2, 5, 2) == 0.0 && p(2, 5, 3) == 0.0 && p(2, 1, 2) == 0.0);
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    attention_case(4);
    attention_case(1);
}

/// A sequence longer than one query block (64), ragged at the end, with two packed sequences:
/// the blocks that score only the keys they can see give the plain masked softmax, and their
/// backward matches finite differences; with and without a sliding window shorter than both
/// sequences.
#[test]
fn blocked_attention_matches_the_plain_formula_and_finite_differences() {
    blocked_attention_case(None);
    blocked_attention_case(Some(23));
}

fn blocked_attention_case(window: Option<usize>) {
    let mut rng = Rng(61);
    let s = AttnShape { batch: 1, seq: 150, heads: 2, kv_heads: 1, head_dim: 2, scale: 0.6, window };
    let segments: Vec<u32> = (0..s.seq).map(|i| if i < 70 { 1 } else { 2 }).collect();
    // Each packed sequence counts its positions from 0.
    let positions: Vec<u32> = (0..s.seq as u32).map(|i| if i < 70 { i } else { i - 70 }).collect();
    let sees = |i: usize, j: usize| {
        j <= i && segments[j] == segments[i] && window.is_none_or(|w| positions[i] - positions[j] < w as u32)
    };
    let (q, k, v) = (rng.vec(s.seq * 4, 1.0), rng.vec(s.seq * 2, 1.0), rng.vec(s.seq * 2, 1.0));
    let r = rng.vec(s.seq * 4, 1.0);
    let fwd = |q: &[f64], k: &[f64], v: &[f64]| {
        let (mut out, mut probs) = (vec![0.0; s.seq * 4], vec![7.0; s.probs_len()]);
        attention_forward(&mut out, &mut probs, q, k, v, &segments, &positions, s);
        (dot(&out, &r), out, probs)
    };
    let (_, out, probs) = fwd(&q, &k, &v);
    for h in 0..2 {
        for i in 0..s.seq {
            let seen: Vec<usize> = (0..=i).filter(|&j| sees(i, j)).collect();
            let score = |j: usize| (q[i * 4 + h * 2] * k[j * 2] + q[i * 4 + h * 2 + 1] * k[j * 2 + 1]) * s.scale;
            let max = seen.iter().map(|&j| score(j)).fold(f64::MIN, f64::max);
            let z: f64 = seen.iter().map(|&j| (score(j) - max).exp()).sum();
            for c in 0..2 {
                let want: f64 = seen.iter().map(|&j| (score(j) - max).exp() / z * v[j * 2 + c]).sum();
                let got = out[i * 4 + h * 2 + c];
                assert!((got - want).abs() < 1e-12, "head {h} query {i}: {got} vs {want}");
            }
            let p_row = &probs[(h * s.seq + i) * s.seq..(h * s.seq + i + 1) * s.seq];
            assert!(
                p_row.iter().enumerate().all(|(j, &p)| (p > 0.0) == seen.contains(&j)),
                "probabilities of query {i}"
            );
        }
    }
    let (mut dq, mut dk, mut dv) = (vec![9.0; q.len()], vec![9.0; k.len()], vec![9.0; v.len()]);
    let mut scratch = vec![0.0; s.scratch_len()];
    attention_backward(&mut dq, &mut dk, &mut dv, &mut scratch, &r, &probs, &q, &k, &v, s);
    check("blocked attention dq", &q, &dq, |q| fwd(q, &k, &v).0);
    check("blocked attention dk", &k, &dk, |k| fwd(&q, k, &v).0);
    check("blocked attention dv", &v, &dv, |v| fwd(&q, &k, v).0);
}

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let mut rng = Rng(7);
    let (rows, vocab) = (5, 11);
    let z = rng.vec(rows * vocab, 4.0);
    let targets = vec![3u32, IGNORE, 0, 10, 7];
    let weights = vec![0.5, 0.0, 1.0, 0.25, 2.0];
    let fwd = |z: &[f64]| {
        let (mut losses, mut lse) = (vec![0.0; rows], vec![0.0; rows]);
        cross_entropy_forward(&mut losses, &mut lse, z, &targets);
        (dot(&losses, &weights), losses, lse)
    };
    let (_, losses, lse) = fwd(&z);
    // ℓ = −log softmax(z)[target], computed independently.
    for (row, &t) in targets.iter().enumerate() {
        if t == IGNORE {
            assert_eq!(losses[row], 0.0);
            continue;
        }
        let zr = &z[row * vocab..(row + 1) * vocab];
        let denom: f64 = zr.iter().map(|v| v.exp()).sum();
        assert!((losses[row] - -(zr[t as usize].exp() / denom).ln()).abs() < 1e-12);
    }
    let mut dz = z.clone();
    cross_entropy_backward(&mut dz, &lse, &targets, &weights);
    check("cross-entropy", &z, &dz, |z| fwd(z).0);
}

#[test]
fn adamw_matches_the_reference_formula() {
    let h = AdamWHyper { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
    let (mut p, mut m, mut v) = (vec![1.0f64, -2.0], vec![0.0; 2], vec![0.0; 2]);
    let grads = [[0.5, -1.0], [0.25, 3.0]];
    let (mut pr, mut mr, mut vr) = (p.clone(), m.clone(), v.clone());
    for (step, g) in grads.iter().enumerate() {
        adamw_update(&mut p, g, &mut m, &mut v, &h, step as u64 + 1);
        let t = step as i32 + 1;
        for i in 0..2 {
            pr[i] *= 1.0 - h.lr * h.weight_decay;
            mr[i] = h.beta1 * mr[i] + (1.0 - h.beta1) * g[i];
            vr[i] = h.beta2 * vr[i] + (1.0 - h.beta2) * g[i] * g[i];
            let m_hat = mr[i] / (1.0 - h.beta1.powi(t));
            let v_hat = vr[i] / (1.0 - h.beta2.powi(t));
            pr[i] -= h.lr * m_hat / (v_hat.sqrt() + h.eps);
        }
    }
    for i in 0..2 {
        assert!((p[i] - pr[i]).abs() < 1e-12, "{} vs {}", p[i], pr[i]);
    }
}

#[test]
fn clipping_scales_to_the_max_norm_and_leaves_small_gradients() {
    let mut g = vec![3.0f64, 4.0];
    assert_eq!(clip_global_norm(&mut g, 10.0), 5.0);
    assert_eq!(g, vec![3.0, 4.0]);
    assert_eq!(clip_global_norm(&mut g, 1.0), 5.0);
    assert!((global_norm(&g) - 1.0).abs() < 1e-6);
}

#[test]
fn lora_backward_matches_finite_differences() {
    let mut rng = Rng(8);
    let (rows, n_in, n_out, rank, scale) = (6, 7, 5, 3, 2.0);
    let (x, a, b, r) =
        (rng.vec(rows * n_in, 1.0), rng.vec(rank * n_in, 1.0), rng.vec(n_out * rank, 1.0), rng.vec(rows * n_out, 1.0));
    let base = rng.vec(rows * n_out, 1.0);
    let fwd = |x: &[f64], a: &[f64], b: &[f64]| {
        let (mut y, mut u) = (base.clone(), vec![0.0; rows * rank]);
        lora_forward(&mut y, &mut u, x, a, b, n_in, n_out, rank, scale);
        (dot(&y, &r), u)
    };
    let u = fwd(&x, &a, &b).1;
    let (mut dx, mut da, mut db, mut du) =
        (vec![0.0; rows * n_in], vec![0.0; rank * n_in], vec![0.0; n_out * rank], vec![0.0; rows * rank]);
    lora_backward(&mut dx, &mut da, &mut db, &mut du, &r, &x, &u, &a, &b, n_in, n_out, rank, scale);
    check("lora dx", &x, &dx, |x| fwd(x, &a, &b).0);
    check("lora dA", &a, &da, |a| fwd(&x, a, &b).0);
    check("lora dB", &b, &db, |b| fwd(&x, &a, b).0);
}
