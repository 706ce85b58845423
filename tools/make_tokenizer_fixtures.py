#!/usr/bin/env python3
"""Generate tokenizer and chat-template oracles for keel-data's tests.

Reads the SmolLM2-135M-Instruct GGUF (``models/``, fetched by
``scripts/fetch-model.sh``) and ``qwen2_5_chat_template.jinja`` (committed, see
its ``.SOURCE.txt``), and writes ``crates/keel-data/tests/fixtures/``:

* ``tokenizer_cases.json`` -- for ~35 strings (digits, whitespace runs, code,
  accents, CJK, emoji, inline special tokens, ...): ``ids`` (encoded with
  ``add_special_tokens=True``), ``ids_no_special`` (``False``) and ``decoded``
  (``decode(ids, skip_special_tokens=False)``).
* ``chat_cases.json`` -- ``apply_chat_template(..., tokenize=False)`` of four
  conversations under the SmolLM2 and Qwen2.5 templates, with and without
  ``add_generation_prompt``.
* ``smollm2_chat_template.jinja`` -- the GGUF's ``tokenizer.chat_template``.
* ``special_tokens.json`` -- bos/eos/pad/unk, whether BOS/EOS are added, the
  control tokens, every ``tokenizer.ggml.*`` key (arrays as type and length)
  and the pre-tokenizer / decoder / post-processor pipelines.

The tokenizer is the one transformers builds from the GGUF
(``AutoTokenizer.from_pretrained(models_dir, gguf_file=...)``) with one
correction. transformers maps ``tokenizer.ggml.pre`` to a split regex only for
the names it lists, and ``smollm`` is not one, so it keeps GPT-2's plain
``ByteLevel(use_regex=True)``. SmolLM2's own tokenizer.json, and llama.cpp's
``smollm`` pre-tokenizer, first isolate every digit (``Digits(individual_digits=
True)`` / regex ``\\p{N}``) and then apply the GPT-2 regex. The vocabulary has no
token containing a digit besides the ten single digits, so the two agree except
on a whitespace run just before a digit: ``"a  1"`` is ``a|ĠĠ|1`` for SmolLM2 but
``a|Ġ|Ġ|1`` for transformers. The fixtures use SmolLM2's pipeline; a case
where transformers' unpatched tokenizer differs also carries
``ids_transformers_gguf``.

Rerunning gives byte-identical files. Regenerate with::

    python tools/make_tokenizer_fixtures.py
"""

import json
from pathlib import Path

from gguf import GGUFReader, GGUFValueType
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR = REPO_ROOT / "crates/keel-data/tests/fixtures"
QWEN_TEMPLATE = OUT_DIR / "qwen2_5_chat_template.jinja"

# The pre-tokenizer of SmolLM2's published tokenizer.json.
SMOLLM_PRE_TOKENIZER = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
])

PYTHON_SNIPPET = '''def greet(name):
    if name:
        return f"Hello, {name}!"
    return None
'''

TEXTS = [
    # digits
    "12345",
    "3.14159",
    "1,000,000",
    "year 2024",
    "½ cup, x² + y³",
    # whitespace runs, including before digits (where transformers' GGUF tokenizer differs)
    "a  b",
    "   leading",
    "trailing   ",
    "tabs\tand\nnewlines\n\n",
    "\r\n windows line endings\r\n",
    "  \n  ",
    " Hello",
    "a  1",
    "x =   42",
    "line\n  3",
    "\t\t9 items",
    # code
    PYTHON_SNIPPET,
    '{"key": [1, 2.5, null], "nested": {"ok": true}}',
    # non-ASCII scripts and emoji
    "café naïve résumé",
    "Ünïcödé ΑΒΓ αβγ абв",
    "你好，世界",
    "日本語のテキスト",
    "👍🏽 🎉",
    # special tokens inline, whole and broken
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>assistant\nThe answer is 42.<|im_end|>\n",
    "<repo_name>keel<file_sep>src/main.rs",
    "<|im_start|",
    # plain text
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog while the curious cat watches from the windowsill, "
    "wondering whether today will finally be the day it catches the little red dot.",
    "don't you're I'll",
    "I'M SHOUTING, THEY'RE LOUD",
    "Mixed CASE words, e.g. HTTPServer and camelCaseName",
    "Price: $1,299.99!!!",
]

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is the capital of France?"},
    ],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name a prime number."},
    ],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "Capital of Italy?"},
        {"role": "assistant", "content": "Rome"},
    ],
]


def load_tokenizer():
    return AutoTokenizer.from_pretrained(MODELS_DIR, gguf_file=GGUF_NAME)


def pipeline(tokenizer) -> dict:
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    return {part: backend[part] for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder")}


def encode_no_special(tokenizer) -> list[list[int]]:
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXTS]


def tokenizer_cases(tokenizer, transformers_ids: list[list[int]]) -> list[dict]:
    cases = []
    for text, unpatched in zip(TEXTS, transformers_ids):
        ids = tokenizer(text)["input_ids"]
        case = {
            "text": text,
            "ids": ids,
            "ids_no_special": tokenizer(text, add_special_tokens=False)["input_ids"],
            "decoded": tokenizer.decode(ids, skip_special_tokens=False),
        }
        if unpatched != case["ids_no_special"]:
            case["ids_transformers_gguf"] = unpatched
        cases.append(case)
    return cases


def chat_cases(tokenizer, templates: dict[str, str]) -> list[dict]:
    cases = []
    for name, template in templates.items():
        for messages in CONVERSATIONS:
            for add_generation_prompt in (False, True):
                rendered = tokenizer.apply_chat_template(
                    messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
                )
                cases.append({
                    "template": name,
                    "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                    "rendered": rendered,
                })
    return cases


def gguf_tokenizer_metadata(reader: GGUFReader) -> dict:
    """Every tokenizer.ggml.* key; arrays are described by element type and length."""
    described = {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        if field.types[0] == GGUFValueType.ARRAY:
            described[key] = {"array_of": field.types[1].name, "length": len(field.data)}
        else:
            described[key] = field.contents()
    return described


def special_tokens(tokenizer, reader: GGUFReader, transformers_pipeline: dict) -> dict:
    probe = tokenizer("hi")["input_ids"]
    plain = tokenizer("hi", add_special_tokens=False)["input_ids"]
    return {
        **{
            role: {"id": getattr(tokenizer, f"{role}_token_id"), "token": getattr(tokenizer, f"{role}_token")}
            for role in ("bos", "eos", "pad", "unk")
        },
        "adds_bos": probe[:1] == [tokenizer.bos_token_id] and plain[:1] != [tokenizer.bos_token_id],
        "adds_eos": probe[-1:] == [tokenizer.eos_token_id] and plain[-1:] != [tokenizer.eos_token_id],
        "vocab_size": len(tokenizer),
        "special_added_tokens": [
            {"id": token_id, "token": token.content}
            for token_id, token in sorted(tokenizer.added_tokens_decoder.items())
            if token.special
        ],
        "gguf_tokenizer_metadata": gguf_tokenizer_metadata(reader),
        "pipeline_transformers_gguf": transformers_pipeline,
        "pipeline_fixtures": pipeline(tokenizer),
    }


def write_json(name: str, value) -> None:
    (OUT_DIR / name).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    reader = GGUFReader(MODELS_DIR / GGUF_NAME)
    smollm_template = reader.fields["tokenizer.chat_template"].contents()
    tokenizer = load_tokenizer()
    if tokenizer.chat_template != smollm_template:
        raise AssertionError("transformers did not take the GGUF's chat template")

    transformers_pipeline = pipeline(tokenizer)
    transformers_ids = encode_no_special(tokenizer)
    tokenizer.backend_tokenizer.pre_tokenizer = SMOLLM_PRE_TOKENIZER

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "smollm2_chat_template.jinja").write_text(smollm_template, encoding="utf-8")
    templates = {"smollm2": smollm_template, "qwen2_5": QWEN_TEMPLATE.read_text(encoding="utf-8")}
    write_json("tokenizer_cases.json", tokenizer_cases(tokenizer, transformers_ids))
    write_json("chat_cases.json", chat_cases(tokenizer, templates))
    write_json("special_tokens.json", special_tokens(tokenizer, reader, transformers_pipeline))
    for name in ("tokenizer_cases.json", "chat_cases.json", "smollm2_chat_template.jinja", "special_tokens.json"):
        path = OUT_DIR / name
        print(f"{path.stat().st_size:8d}  {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
