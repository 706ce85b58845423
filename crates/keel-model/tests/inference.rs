//! KV-cache decoding gives the same logits as the full training forward.

use keel_kernels::cross_entropy::IGNORE;
use keel_model::inference::Decoder;
use keel_model::{Batch, Transformer, Workspace};
use std::path::PathBuf;

fn fixture(variant: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(variant)
}

/// Last-position logits of the full forward on one sequence.
fn full_forward_last(model: &Transformer, ids: &[u32]) -> Vec<f32> {
    let t = ids.len();
    let batch = Batch {
        batch: 1,
        seq: t,
        ids: ids.to_vec(),
        positions: (0..t as u32).collect(),
        segments: vec![1; t],
        targets: vec![IGNORE; t],
    };
    let mut ws = Workspace::new(&model.config, 1, t, false).unwrap();
    model.forward(&mut ws, &batch).unwrap();
    let v = model.config.vocab_size;
    ws.logits[(t - 1) * v..t * v].to_vec()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff <= 1e-5 * scale.max(1.0), "{what}: logits differ by {diff} (scale {scale})");
}

#[test]
fn cached_decoding_matches_the_full_forward_with_left_padding() {
    for variant in ["llama_untied_rope3", "qwen2_bias_tied", "qwen3_qknorm", "mistral_hd24"] {
        let model = Transformer::load(&fixture(variant)).unwrap();
        let mut seqs: Vec<Vec<u32>> = vec![vec![5, 9, 17, 3, 40, 22, 8], vec![11, 4, 30, 6]];
        let mut dec = Decoder::new(&model, 2, 16);
        let mut logits = dec.prefill(&seqs).unwrap().to_vec();
        let v = model.config.vocab_size;
        for step in 0..4 {
            for (row, seq) in seqs.iter().enumerate() {
                let want = full_forward_last(&model, seq);
                assert_close(&logits_row(&logits, row, v), &want, &format!("{variant} step {step} row {row}"));
            }
            let next: Vec<u32> = (0..2).map(|r| (7 * step + 3 * r + 1) as u32).collect();
            seqs.iter_mut().zip(&next).for_each(|(s, &t)| s.push(t));
            logits = dec.step(&next).unwrap().to_vec();
        }
        assert_eq!(dec.len(), 7 + 4);
    }
}

fn logits_row(all: &[f32], row: usize, vocab: usize) -> Vec<f32> {
    all[row * vocab..(row + 1) * vocab].to_vec()
}

#[test]
fn a_full_context_is_an_error_not_a_panic() {
    let model = Transformer::load(&fixture("llama_tied")).unwrap();
    let mut dec = Decoder::new(&model, 1, 3);
    assert!(dec.prefill(&[vec![1, 2, 3, 4]]).is_err());
    dec.prefill(&[vec![1, 2]]).unwrap();
    dec.step(&[3]).unwrap();
    let err = dec.step(&[4]).unwrap_err().to_string();
    assert!(err.contains("full"), "{err}");
    assert!(dec.prefill(&[vec![1000]]).unwrap_err().to_string().contains("outside the vocabulary"));
}
