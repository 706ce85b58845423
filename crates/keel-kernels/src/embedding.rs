//! Token embedding: a row gather, and its scatter-add backward.

use crate::Real;
use rayon::prelude::*;

/// `out[n, :] = table[ids[n], :]` for `out` `[N × dim]`.
pub fn embedding_forward<T: Real>(out: &mut [T], table: &[T], ids: &[u32], dim: usize) {
    out.par_chunks_mut(dim).zip(ids.par_iter()).for_each(|(row, &id)| {
        let id = id as usize;
        row.copy_from_slice(&table[id * dim..(id + 1) * dim]);
    });
}

/// `dtable[ids[n], :] += dout[n, :]`. Sequential: rows may repeat, and the cost is negligible.
pub fn embedding_backward<T: Real>(dtable: &mut [T], dout: &[T], ids: &[u32], dim: usize) {
    for (row, &id) in dout.chunks(dim).zip(ids) {
        let id = id as usize;
        dtable[id * dim..(id + 1) * dim].iter_mut().zip(row).for_each(|(d, &g)| *d += g);
    }
}
