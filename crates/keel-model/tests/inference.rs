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
fn cached_decoding_matches_the_full_forward_for_rows_of_different_lengths() {
    // gemma3_swa's window of 4 is shorter than every row: decoding runs past it.
    for variant in ["llama_untied_rope3", "qwen2_bias_tied", "qwen3_qknorm", "mistral_hd24", "gemma3_swa"] {
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
        assert_eq!((dec.len(0), dec.len(1)), (7 + 4, 4 + 4));
    }
}

#[test]
fn a_slot_refilled_mid_decoding_matches_a_fresh_sequence() {
    let model = Transformer::load(&fixture("qwen3_qknorm")).unwrap();
    let v = model.config.vocab_size;
    let mut dec = Decoder::new(&model, 3, 16);
    dec.prefill(&[vec![5, 9, 17], vec![11, 4], vec![8, 8, 8, 8]]).unwrap();
    dec.step(&[1, 2, 3]).unwrap();
    // Slot 1 finishes; a new prompt takes it while slots 0 and 2 take one more token each, in
    // one packed call. Slot 2 then sits out a call.
    dec.reset(1);
    let logits = dec.feed(&[(0, &[21]), (1, &[30, 6, 12]), (2, &[22])]).unwrap().to_vec();
    assert_close(&logits_row(&logits, 0, v), &full_forward_last(&model, &[5, 9, 17, 1, 21]), "slot 0");
    assert_close(&logits_row(&logits, 1, v), &full_forward_last(&model, &[30, 6, 12]), "refilled slot 1");
    assert_close(&logits_row(&logits, 2, v), &full_forward_last(&model, &[8, 8, 8, 8, 3, 22]), "slot 2");
    let logits = dec.feed(&[(1, &[7]), (0, &[40])]).unwrap().to_vec();
    assert_close(&logits_row(&logits, 0, v), &full_forward_last(&model, &[30, 6, 12, 7]), "slot 1, fed first");
    assert_close(&logits_row(&logits, 1, v), &full_forward_last(&model, &[5, 9, 17, 1, 21, 40]), "slot 0, fed second");
    assert_eq!((dec.len(0), dec.len(1), dec.len(2)), (6, 4, 6));
    // Bad feeds are refused before anything changes.
    assert!(dec.feed(&[(0, &[1]), (0, &[2])]).unwrap_err().to_string().contains("twice"));
    assert!(dec.feed(&[(3, &[1])]).is_err());
    assert_eq!(dec.len(0), 6);
}

#[test]
fn a_prompt_longer_than_a_query_block_matches_the_full_forward() {
    // The cached attention cuts long prompts into blocks of queries; 150 tokens make three.
    for variant in ["llama_untied_rope3", "gemma3_swa"] {
        long_prompt_case(variant);
    }
}

fn long_prompt_case(variant: &str) {
    let model = Transformer::load(&fixture(variant)).unwrap();
    let v = model.config.vocab_size;
    // 150 tokens, or as many as the context holds (gemma3_swa: 128).
    let n = 150.min(model.config.max_position_embeddings) as u32;
    let prompt: Vec<u32> = (0..n).map(|i| (i * 37 + 11) % v as u32).collect();
    let mut dec = Decoder::new(&model, 2, n as usize);
    let logits = dec.prefill(&[prompt.clone(), prompt[..70].to_vec()]).unwrap().to_vec();
    assert_close(&logits_row(&logits, 0, v), &full_forward_last(&model, &prompt), "the whole prompt");
    assert_close(&logits_row(&logits, 1, v), &full_forward_last(&model, &prompt[..70]), "70-token prompt");
    let logits = dec.feed(&[(1, &prompt[70..n as usize - 10])]).unwrap().to_vec();
    let want = full_forward_last(&model, &prompt[..n as usize - 10]);
    assert_close(&logits_row(&logits, 0, v), &want, "more tokens after 70");
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

#[test]
fn a_model_rounded_to_16_bits_decodes_from_its_16_bit_copy_as_the_full_forward_scores_it() {
    use keel_kernels::packed::Storage;
    for storage in [Storage::F16, Storage::Bf16] {
        for slots in [1, 2] {
            let mut model = Transformer::load(&fixture("qwen2_bias_tied")).unwrap();
            let exact = model.params.clone();
            model.round_matrices(storage).unwrap();
            let moved = exact.iter().zip(&model.params).filter(|(a, b)| a != b).count();
            assert!(moved > exact.len() / 2, "{storage:?}: only {moved} of {} weights rounded", exact.len());
            let mut seqs: Vec<Vec<u32>> = [vec![5, 9, 17, 3, 40, 22, 8], vec![11, 4, 30, 6]][..slots].to_vec();
            let mut dec = Decoder::new(&model, slots, 16);
            let mut logits = dec.prefill(&seqs).unwrap().to_vec();
            let v = model.config.vocab_size;
            for step in 0..4 {
                for (row, seq) in seqs.iter().enumerate() {
                    let want = full_forward_last(&model, seq);
                    let what = format!("{storage:?} {slots} slot(s) step {step} row {row}");
                    assert_close(&logits_row(&logits, row, v), &want, &what);
                }
                let next: Vec<u32> = (0..slots).map(|r| (7 * step + 3 * r + 1) as u32).collect();
                seqs.iter_mut().zip(&next).for_each(|(s, &t)| s.push(t));
                logits = dec.step(&next).unwrap().to_vec();
            }
        }
    }
}

#[test]
fn rounding_refuses_a_weight_beyond_f16_naming_it() {
    use keel_kernels::packed::Storage;
    let mut model = Transformer::load(&fixture("qwen2_bias_tied")).unwrap();
    let q = model.layout.layers[0].q.start;
    model.params[q + 3] = 1e6;
    let err = model.round_matrices(Storage::F16).unwrap_err().to_string();
    assert!(err.contains("model.layers.0.self_attn.q_proj.weight [3] = 1000000") && err.contains("F16"), "{err}");
    model.params[q + 3] = 0.5;
    model.round_matrices(Storage::Bf16).unwrap();
    assert_eq!(model.storage, Storage::Bf16);
}
