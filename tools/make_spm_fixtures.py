#!/usr/bin/env python3
"""Generate the SentencePiece (GGUF ``tokenizer.ggml.model = llama``) tokenizer oracle.

No Llama-2-style GGUF is reachable here, so this trains a small SentencePiece BPE model with
Llama's settings (byte fallback, split digits, no normalization, a dummy prefix, kept whitespace;
``<unk>``, ``<s>``, ``</s>`` at ids 0-2) on GSM8K questions from ``../shared/data``, then writes:

* ``spm_tokenizer.gguf`` -- a GGUF holding only the ``tokenizer.ggml.*`` keys, laid out as
  llama.cpp's converter writes them for a SentencePiece vocabulary: tokens, scores, token types
  (1 normal, 2 unknown, 3 control, 6 byte), BOS/EOS/UNK ids, ``add_bos_token``,
  ``add_space_prefix``.
* ``spm_cases.json`` -- for 20 hand-picked strings and the first 200 GSM8K test questions:
  ``ids`` from sentencepiece itself (BOS not added),
  ``decoded`` (sentencepiece's decode of those ids), and ``ids_transformers_gguf``, the ids
  transformers gets from the same GGUF (``AutoTokenizer.from_pretrained(gguf_file=...)``).

Needs ``pip install sentencepiece gguf transformers``. Training is seeded and single-threaded,
so a rerun gives the same files. Regenerate with::

    python tools/make_spm_fixtures.py
"""

import json
import tempfile
from pathlib import Path

import gguf
import sentencepiece as spm

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared/data/gsm8k/train.jsonl"
TEST_DATA = REPO_ROOT.parent / "shared/data/gsm8k/test.jsonl"
OUT_DIR = REPO_ROOT / "crates/keel-data/tests/fixtures"

CASES = [
    "Hello world",
    "Hello  world",
    " leading space",
    "trailing space ",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "12345 + 67890 = 80235",
    "3.14159",
    "tabs\tand\nnewlines\n\nhere",
    "    indented code",
    "def f(x):\n    return x * 2",
    "Café naïve résumé",
    "日本語のテキスト",
    "emoji 🚀 and 👍🏽",
    "",
    " ",
    "a",
    "ALL CAPS SENTENCE",
    "mixed123numbers456",
    "punctuation!!! ??? ...",
    "How many clips did Natalia sell altogether in April and May?",
]


def main():
    questions = [json.loads(line)["question"] for line in DATA.read_text().splitlines()[:3000]]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(questions) + "\n")
        prefix = str(Path(tmp) / "spm")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=prefix, model_type="bpe", vocab_size=1000,
            byte_fallback=True, split_digits=True, normalization_rule_name="identity",
            add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.9995,
            num_threads=1, seed_sentencepiece_size=100000, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")

    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    scores = [sp.get_score(i) for i in range(n)]

    def token_type(i):
        if sp.is_unknown(i):
            return 2
        if sp.is_control(i):
            return 3
        if sp.is_byte(i):
            return 6
        return 1

    path = OUT_DIR / "spm_tokenizer.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types([token_type(i) for i in range(n)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(OUT_DIR), gguf_file=path.name)
    cases = []
    for text in CASES:
        ids = sp.encode(text)
        hf_ids = hf(text, add_special_tokens=False).input_ids
        cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids), "ids_transformers_gguf": hf_ids})
        if hf_ids != ids:
            print(f"transformers differs from sentencepiece on {text!r}")
    # Unseen text in bulk: the first 200 GSM8K test questions.
    test_questions = [json.loads(line)["question"] for line in TEST_DATA.read_text().splitlines()[:200]]
    for text in test_questions:
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids),
                      "ids_transformers_gguf": hf(text, add_special_tokens=False).input_ids})
    (OUT_DIR / "spm_cases.json").write_text(json.dumps(cases, ensure_ascii=False) + "\n")
    print(f"wrote {path.name} ({path.stat().st_size} bytes, {n} tokens) and spm_cases.json ({len(cases)} cases)")


if __name__ == "__main__":
    main()
