//! Rotary position embedding in Hugging Face's rotate-half convention: within each head of size
//! `d`, element `i < d/2` pairs with `i + d/2`, both rotated by the angle `pos · inv_freq[i]`.

use crate::Real;
use rayon::prelude::*;

/// cos/sin of `pos · inv_freq[i]` for positions `0..len`, `[len × d/2]` each.
pub struct RopeTable<T> {
    half: usize,
    cos: Vec<T>,
    sin: Vec<T>,
}

impl<T: Real> RopeTable<T> {
    /// The table for positions `0..len` and the given inverse frequencies (one per pair).
    /// The angle is formed in f32 as transformers forms it, so that both agree to the last bit of
    /// the angle; cos and sin are then taken in f64.
    pub fn new(inv_freq: &[f32], len: usize) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in 0..len {
            for &f in inv_freq {
                let angle = (pos as f32 * f) as f64;
                cos.push(T::from_f64(angle.cos()));
                sin.push(T::from_f64(angle.sin()));
            }
        }
        RopeTable { half, cos, sin }
    }

    /// The head width the table rotates (twice the number of frequencies).
    pub fn head_dim(&self) -> usize {
        2 * self.half
    }

    /// Number of positions covered.
    pub fn len(&self) -> usize {
        self.cos.len() / self.half.max(1)
    }

    /// Whether the table covers no position.
    pub fn is_empty(&self) -> bool {
        self.cos.is_empty()
    }

    /// Rotates `x` (`[N × heads × d]`) in place; `inverse` rotates by the negative angle, which is
    /// the backward (the rotation is orthogonal).
    pub fn apply(&self, x: &mut [T], positions: &[u32], heads: usize, inverse: bool) {
        let (half, d) = (self.half, 2 * self.half);
        assert_eq!(x.len(), positions.len() * heads * d, "rope: x does not match positions × heads × head_dim");
        x.par_chunks_mut(heads * d).zip(positions.par_iter()).for_each(|(tok, &pos)| {
            let pos = pos as usize;
            assert!(pos < self.len(), "rope: position {pos} beyond the table ({})", self.len());
            let (cos, sin) = (&self.cos[pos * half..(pos + 1) * half], &self.sin[pos * half..(pos + 1) * half]);
            for head in tok.chunks_mut(d) {
                let (lo, hi) = head.split_at_mut(half);
                for i in 0..half {
                    let (c, s) = (cos[i], if inverse { -sin[i] } else { sin[i] });
                    let (a, b) = (lo[i], hi[i]);
                    lo[i] = a * c - b * s;
                    hi[i] = b * c + a * s;
                }
            }
        });
    }
}
