//! Tokenizing conversations with a loss mask on the assistant's tokens.
//!
//! The conversation is rendered through the model's chat template. The characters each
//! assistant turn adds are found by rendering the conversation up to that turn with and without
//! it (`render(msgs[..i], generation prompt)` is a prefix of `render(msgs[..=i])`); tokens that
//! start inside such a span are supervised. This works for multi-turn conversations and any
//! template whose renderings extend each other, which keel checks.

use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Result};

/// Token ids and, for each token, whether it is a training target.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenizedExample {
    /// Token ids of the rendered conversation.
    pub ids: Vec<u32>,
    /// Per token, whether it belongs to an assistant turn (and so carries a loss).
    pub supervised: Vec<bool>,
}

impl TokenizedExample {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of supervised tokens.
    pub fn num_supervised(&self) -> usize {
        self.supervised.iter().filter(|&&s| s).count()
    }
}

/// Renders and tokenizes `messages`; `Ok(None)` when there is no assistant turn to learn from.
pub fn tokenize_conversation(
    tok: &Tokenizer,
    template: &ChatTemplate,
    messages: &[Message],
) -> Result<Option<TokenizedExample>> {
    let text = template.render(messages, false)?;
    let mut spans = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = template.render(&messages[..i], true)?;
        let through = template.render(&messages[..=i], false)?;
        ensure!(
            through.starts_with(&before) && text.starts_with(&through),
            "the chat template does not render turn by turn (a conversation's prefix renders differently), so the \
             assistant tokens cannot be located"
        );
        spans.push(before.len()..through.len());
    }
    if spans.is_empty() {
        return Ok(None);
    }
    let (mut ids, offsets) = tok.encode_with_offsets(&text)?;
    let mut supervised: Vec<bool> =
        offsets.iter().map(|&(start, _)| spans.iter().any(|s| s.contains(&start))).collect();
    if tok.add_bos {
        let Some((bos, _)) = &tok.bos else { bail!("the tokenizer adds BOS but has none") };
        ids.insert(0, *bos);
        supervised.insert(0, false);
    }
    Ok(Some(TokenizedExample { ids, supervised }))
}

/// A tokenized conversation printed with its loss mask: supervised tokens between `[` `]`.
pub fn show_mask(tok: &Tokenizer, ex: &TokenizedExample) -> Result<String> {
    let mut out = String::new();
    let mut inside = false;
    for (&id, &sup) in ex.ids.iter().zip(&ex.supervised) {
        if sup != inside {
            out.push(if sup { '[' } else { ']' });
            inside = sup;
        }
        out.push_str(&tok.decode(&[id], false)?);
    }
    if inside {
        out.push(']');
    }
    Ok(out)
}
