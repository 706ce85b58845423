//! Text generation: greedy or seeded temperature/top-p sampling over the KV-cache decoder,
//! stopping at EOS, a stop string or the token budget.

use crate::detokenize::TextStream;
use crate::pretrained::Pretrained;
use anyhow::{ensure, Result};
use keel_model::inference::Decoder;
use keel_model::rng::Rng;

/// How [`generate`] decodes; the default is greedy, 256 new tokens, 8 prompts at a time.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// New tokens per prompt at most (default 256); fewer when the model's context runs out first.
    pub max_new_tokens: usize,
    /// 0 means greedy.
    pub temperature: f64,
    /// Nucleus sampling: draw only from the most likely tokens whose probability mass first reaches
    /// this (default 1: all tokens). Ignored when greedy.
    pub top_p: f64,
    /// Seeds the sampler: the same seed and prompts give the same draws.
    pub seed: u64,
    /// Generation ends before the first occurrence of any of these strings.
    pub stop: Vec<String>,
    /// Prompts decoded together (continuous batching).
    pub batch: usize,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { max_new_tokens: 256, temperature: 0.0, top_p: 1.0, seed: 0, stop: Vec::new(), batch: 8 }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model emitted one of [`Pretrained::stop_ids`] (not kept in the output).
    Eos,
    /// A stop string appeared; the text is cut before it.
    Stop,
    /// `max_new_tokens` reached, or the model's context is full.
    Length,
}

/// One prompt's continuation.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids, without the stop id that ended them (a stop string's tokens are kept).
    pub ids: Vec<u32>,
    /// The decoded continuation, cut before a stop string.
    pub text: String,
    /// Why decoding ended.
    pub finish: Finish,
}

/// Picks the next token from logits.
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: Rng,
}

impl Sampler {
    /// A sampler with `o`'s temperature, top-p and seed.
    pub fn new(o: &GenOptions) -> Self {
        Sampler { temperature: o.temperature, top_p: o.top_p, rng: Rng::new(o.seed) }
    }

    /// The next token id from one position's `[vocab]` logits: the argmax when greedy, otherwise a
    /// seeded draw from the top-p nucleus of softmax(logits / temperature).
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
            logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
                as u32
        };
        if self.temperature <= 0.0 {
            return argmax();
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> =
            logits.iter().enumerate().map(|(i, &x)| (i as u32, ((x as f64 - max) / self.temperature).exp())).collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // The nucleus: the most likely tokens whose mass first reaches top_p. Only those need
        // ordering, so the top k are selected and sorted, k widening until they hold top_p
        // (the order is total, so this equals sorting everything).
        let order = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut k = 64.min(probs.len());
        let kept = loop {
            if k < probs.len() {
                probs.select_nth_unstable_by(k - 1, order);
            }
            probs[..k].sort_by(order);
            let mut mass = 0.0;
            if let Some(kept) = probs[..k].iter().position(|p| {
                mass += p.1 / total;
                mass >= self.top_p
            }) {
                break kept + 1;
            }
            if k == probs.len() {
                break k;
            }
            k = (k * 8).min(probs.len());
        };
        let nucleus = &probs[..kept];
        let nucleus_mass: f64 = nucleus.iter().map(|p| p.1).sum();
        let mut u = self.rng.uniform() * nucleus_mass;
        for p in nucleus {
            u -= p.1;
            if u <= 0.0 {
                return p.0;
            }
        }
        nucleus[kept - 1].0
    }
}

/// Generates a continuation of each prompt (token ids), `o.batch` at a time with continuous
/// batching: when one finishes, the next prompt takes its slot while the others keep decoding.
/// `on_update(prompt, generation, finished)` is called whenever a generation's text grows and
/// once when it ends (for streaming and progress).
pub fn generate(
    pre: &Pretrained,
    prompts: &[Vec<u32>],
    o: &GenOptions,
    mut on_update: impl FnMut(usize, &Generation, bool),
) -> Result<Vec<Generation>> {
    ensure!(!prompts.is_empty(), "nothing to generate from");
    ensure!(prompts.iter().all(|p| !p.is_empty()), "a prompt is empty");
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let context = pre.model.config.max_position_embeddings;
    ensure!(longest < context, "the prompt has {longest} tokens; the model's context is {context}");
    let mut out: Vec<Generation> =
        prompts.iter().map(|_| Generation { ids: Vec::new(), text: String::new(), finish: Finish::Length }).collect();
    if o.max_new_tokens == 0 {
        return Ok(out);
    }
    let capacity = (longest + o.max_new_tokens).min(context);
    let slots = o.batch.clamp(1, prompts.len());
    let mut dec = Decoder::new(&pre.model, slots, capacity);
    let stop_ids = pre.stop_ids();
    let mut sampler = Sampler::new(o);
    let vocab = pre.model.config.vocab_size;
    // Which prompt each slot is generating, and what each slot is fed next.
    let mut owner: Vec<Option<usize>> = vec![None; slots];
    let mut feeds: Vec<(usize, Vec<u32>)> = Vec::with_capacity(slots);
    let mut next_prompt = 0;
    let mut streams: Vec<TextStream> = vec![TextStream::default(); prompts.len()];
    let longest_stop = o.stop.iter().map(String::len).max().unwrap_or(0);
    loop {
        for (slot, owner) in owner.iter_mut().enumerate() {
            if owner.is_none() && next_prompt < prompts.len() {
                dec.reset(slot);
                *owner = Some(next_prompt);
                feeds.push((slot, prompts[next_prompt].clone()));
                next_prompt += 1;
            }
        }
        if feeds.is_empty() {
            break;
        }
        let fed: Vec<(usize, &[u32])> = feeds.iter().map(|(s, t)| (*s, t.as_slice())).collect();
        let logits = dec.feed(&fed)?.to_vec();
        let mut next_feeds = Vec::with_capacity(slots);
        for (k, &(slot, _)) in fed.iter().enumerate() {
            let i = owner[slot].expect("fed slots have an owner");
            let g = &mut out[i];
            let id = sampler.pick(&logits[k * vocab..(k + 1) * vocab]);
            let finish = if stop_ids.contains(&id) {
                Some(Finish::Eos)
            } else {
                g.ids.push(id);
                let before = streams[i].text.len();
                let added = streams[i].push(&pre.tokenizer, &g.ids)?.len();
                // A stop string can only end in what was just added.
                let from = floor_char_boundary(&streams[i].text, before.saturating_sub(longest_stop));
                let tail = &streams[i].text[from..];
                if let Some(cut) = o.stop.iter().filter_map(|s| tail.find(s.as_str())).min() {
                    streams[i].text.truncate(from + cut);
                    g.text = streams[i].text.clone();
                    Some(Finish::Stop)
                } else {
                    if added > 0 {
                        g.text.clone_from(&streams[i].text);
                        on_update(i, g, false);
                    }
                    let full = g.ids.len() >= o.max_new_tokens || dec.len(slot) >= capacity;
                    full.then_some(Finish::Length)
                }
            };
            match finish {
                Some(f) => {
                    if f != Finish::Stop {
                        // Whatever a held-back incomplete character became, as the tokenizer
                        // decodes the whole answer.
                        g.text = pre.tokenizer.decode(&g.ids, true)?;
                    }
                    g.finish = f;
                    owner[slot] = None;
                    on_update(i, g, true);
                }
                None => next_feeds.push((slot, vec![id])),
            }
        }
        feeds = next_feeds;
    }
    Ok(out)
}

/// The largest char boundary of `s` at or before `i`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len())).rev().find(|&b| s.is_char_boundary(b)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_sampling_is_seeded_and_respects_top_p() {
        let logits = [0.0f32, 3.0, 1.0, 2.9];
        let mut greedy = Sampler::new(&GenOptions::default());
        assert_eq!(greedy.pick(&logits), 1);
        let opts = GenOptions { temperature: 1.0, top_p: 0.5, seed: 9, ..GenOptions::default() };
        let draws = |o: &GenOptions| {
            let mut s = Sampler::new(o);
            (0..200).map(|_| s.pick(&logits)).collect::<Vec<_>>()
        };
        let a = draws(&opts);
        assert_eq!(a, draws(&opts), "same seed, same draws");
        // Token 1 alone holds less than half the mass, so the nucleus is {1, 3}.
        assert!(a.iter().all(|&t| t == 1 || t == 3) && a.contains(&1) && a.contains(&3));
        let wide = draws(&GenOptions { top_p: 1.0, ..opts.clone() });
        assert!(wide.contains(&2), "with top_p = 1 every token can be drawn");
    }

    /// The nucleus from a partial selection picks what sorting the whole vocabulary picks.
    #[test]
    fn partial_selection_draws_as_a_full_sort_does() {
        let full_sort_pick = |logits: &[f32], o: &GenOptions, rng: &mut Rng| -> u32 {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let mut probs: Vec<(u32, f64)> =
                logits.iter().enumerate().map(|(i, &x)| (i as u32, ((x as f64 - max) / o.temperature).exp())).collect();
            let total: f64 = probs.iter().map(|p| p.1).sum();
            probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let (mut kept, mut mass) = (0, 0.0);
            for p in &probs {
                kept += 1;
                mass += p.1 / total;
                if mass >= o.top_p {
                    break;
                }
            }
            let nucleus_mass: f64 = probs[..kept].iter().map(|p| p.1).sum();
            let mut u = rng.uniform() * nucleus_mass;
            for p in &probs[..kept] {
                u -= p.1;
                if u <= 0.0 {
                    return p.0;
                }
            }
            probs[kept - 1].0
        };
        let mut data = Rng::new(5);
        // A flat distribution needs thousands of tokens for top_p (k widens several times); a
        // peaked one needs a few; repeated values test the tie order.
        for (spread, top_p) in [(0.05, 0.9), (8.0, 0.9), (1.0, 0.5), (1.0, 1.0), (0.0, 0.7)] {
            let logits: Vec<f32> = (0..5000).map(|_| ((data.uniform() * 4.0).floor() * spread) as f32).collect();
            let o = GenOptions { temperature: 0.8, top_p, seed: 11, ..GenOptions::default() };
            let (mut sampler, mut reference) = (Sampler::new(&o), Rng::new(11));
            for _ in 0..50 {
                assert_eq!(
                    sampler.pick(&logits),
                    full_sort_pick(&logits, &o, &mut reference),
                    "spread {spread}, top_p {top_p}"
                );
            }
        }
    }
}
