//! L2 regularization toward the initial weights: `λ · Σ (θ − θ₀)² / N`.

use rayon::prelude::*;

/// Adds the penalty's gradient `2λ(θ − θ₀)/N` to `grads` and returns the penalty
/// (N = number of trainable scalars).
pub fn add_l2_to_initial(grads: &mut [f32], params: &[f32], initial: &[f32], lambda: f64) -> f64 {
    let n = params.len() as f64;
    let coef = (2.0 * lambda / n) as f32;
    grads
        .par_iter_mut()
        .zip(params.par_iter().zip(initial.par_iter()))
        .for_each(|(g, (&p, &p0))| *g += coef * (p - p0));
    let sq = keel_kernels::parallel::sum_f64(params.len(), |i| {
        let d = (params[i] - initial[i]) as f64;
        d * d
    });
    lambda * sq / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_is_two_lambda_delta_over_n() {
        let (params, initial) = ([1.0f32, 2.0, -1.0, 0.5], [0.5f32, 2.0, 1.0, 0.0]);
        let mut grads = [0.1f32; 4];
        let penalty = add_l2_to_initial(&mut grads, &params, &initial, 0.2);
        for i in 0..4 {
            let want = 0.1 + 2.0 * 0.2 * (params[i] - initial[i]) / 4.0;
            assert!((grads[i] - want).abs() < 1e-7);
        }
        assert!((penalty - 0.2 * (0.25 + 0.0 + 4.0 + 0.25) / 4.0).abs() < 1e-12);
    }
}
