#!/usr/bin/env python3
"""Write crates/keel-eval/tests/fixtures/ifeval_oracle.json: verdicts of the OFFICIAL IFEval
checkers, which keel's tests (crates/keel-eval/tests/ifeval.rs) compare keel's scoring against.

Regenerate with:

    python3 -m venv /tmp/ifeval-venv
    /tmp/ifeval-venv/bin/pip install nltk langdetect immutabledict packaging
    # the official checkers: lm-evaluation-harness's lm_eval/tasks/ifeval/{instructions.py,
    # instructions_registry.py, instructions_util.py, utils.py}, copied into some directory
    # (they are not vendored into this repository), e.g. /tmp/ifeval_official
    /tmp/ifeval-venv/bin/python tools/make_ifeval_fixtures.py /tmp/ifeval_official

The fixture was made with lm-evaluation-harness 4e7e0d47 (its ifeval checkers are Google's
`instruction_following_eval` with lm-eval's driver, utils.py), nltk 3.10.4, langdetect 1.0.9 and
CPython 3.11.

What the script pins down, and why:

* NLTK data. The official `instructions_util` counts sentences with NLTK's Punkt English model
  and capital words with `nltk.word_tokenize` (Punkt again), and downloads `punkt_tab` when it
  is missing. This machine reaches no NLTK download server, so the script writes keel's copy of
  that model (crates/keel-eval/src/ifeval/punkt_english.txt, NLTK's punkt_tab/english files) out
  as a `tokenizers/punkt_tab/english` directory in a temporary folder, puts the folder first on
  `nltk.data.path` before the official module is imported, and replaces `nltk.download` with a
  function that fails, so nothing is fetched and only that model is used. Everything else runs
  NLTK's own code (in NLTK >= 3.9, `nltk.data.load("tokenizers/punkt/english.pickle")` also
  returns `PunktTokenizer("english")`, which reads punkt_tab).
* langdetect draws a random seed per call unless `DetectorFactory.seed` is set; the script sets
  it to 0, as keel does, so verdicts are reproducible.
* Rows 1122 and 1129 of the data give `keywords:letter_frequency` a letter that is not an ASCII
  letter, for which the official code checks a random letter instead; they are left out here
  (keel's own tests cover what keel does with them).

The fixture holds: `cases` (an IFEval row, a response, and the official strict and loose
verdicts per instruction), `texts` (official sentence lists, word counts and `word_tokenize`
tokens of hand-written and randomly generated texts) and `languages` (langdetect's answer, or
null where it raises).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "ifeval", "input_data.jsonl")
DEFAULT_OUT = os.path.join(REPO, "crates", "keel-eval", "tests", "fixtures", "ifeval_oracle.json")
PUNKT = os.path.join(REPO, "crates", "keel-eval", "src", "ifeval", "punkt_english.txt")


def write_punkt_tab(root):
    """keel's Punkt model file -> <root>/tokenizers/punkt_tab/english/*, NLTK's format."""
    sections = {}
    name = None
    with open(PUNKT, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line.startswith("@"):
                name = line[1:]
                sections[name] = []
            elif name is not None and line:
                sections[name].append(line)
    d = os.path.join(root, "tokenizers", "punkt_tab", "english")
    os.makedirs(d)
    files = {
        "abbrev_types.txt": [json.loads(x) for x in sections["abbrev_types"]],
        "sent_starters.txt": [json.loads(x) for x in sections["sent_starters"]],
        "collocations.tab": ["\t".join(json.loads(p) for p in x.split("\t")) for x in sections["collocations"]],
        "ortho_context.tab": sections["ortho_context"],
    }
    for fname, lines in files.items():
        with open(os.path.join(d, fname), "w", encoding="utf-8", newline="") as f:
            f.write("\n".join(lines))


def load_official(official_dir):
    """Imports the official modules as lm_eval.tasks.ifeval.* from `official_dir`."""
    for name in ("lm_eval", "lm_eval.tasks"):
        m = types.ModuleType(name)
        m.__path__ = []
        sys.modules[name] = m
    pkg = types.ModuleType("lm_eval.tasks.ifeval")
    pkg.__path__ = [official_dir]
    sys.modules["lm_eval.tasks.ifeval"] = pkg
    import importlib

    util = importlib.import_module("lm_eval.tasks.ifeval.instructions_util")
    utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
    return util, utils


# ---------------------------------------------------------------------------------------------
# Responses. Rows are IFEval keys (the row is copied from the data) or inline rows.
# ---------------------------------------------------------------------------------------------

def inline(key, ids, kwargs, prompt="(synthetic row)"):
    return {"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs}


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def words(n):
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


LOREM = (
    "Dr. Smith arrived at 5 p.m. on Monday. He met Mr. Jones at the U.S. embassy! "
    "Was it raining? No... it was not. They talked about e.g. the budget, i.e. the money. "
    "The meeting ended at 6:30. \"Good,\" he said. (It went well.) Then they left."
)

CASES = [
    # keywords:existence (atlantis, constable)
    (1531, "Atlantis was guarded by a CONSTABLE."),
    (1531, "Atlantis was guarded by nobody."),
    (1531, "The constables of atlantisia."),
    (1531, "Atlantıs and the constable."),
    (1531, ""),
    (1531, "   \n\t "),
    # keywords:frequency (synonyms, at least 3)
    (1393, "Synonyms, SYNONYMS and synonyms."),
    (1393, "synonyms synonyms"),
    (1393, "synonymsynonymsynonyms"),
    (inline(-1, ["keywords:frequency"], [{"keyword": "can", "frequency": 2, "relation": "less than"}]), "I cannot go."),
    (inline(-1, ["keywords:frequency"], [{"keyword": "can", "frequency": 2, "relation": "less than"}]), "I can, you can."),
    # keywords:forbidden_words (slow, like, kid)
    (301, "Pedal steadily and keep your balance."),
    (301, "Like riding a horse."),
    (301, "Likely your kidney slowly recovers."),
    (301, "The kid's bike."),
    (301, "the_kid and kid2 and kidé"),
    (301, "kid\u0301 is accented"),
    (301, "KID"),
    # keywords:letter_frequency (i less than 3; e at least 5)
    (201, "A man met a dog."),
    (201, "I like it."),
    (201, "İİ"),
    (201, "İİİ here"),
    (inline(-2, ["keywords:letter_frequency"], [{"letter": "e", "let_frequency": 5, "let_relation": "at least"}]), "EEEee"),
    (inline(-2, ["keywords:letter_frequency"], [{"letter": "E", "let_frequency": 5, "let_relation": "at least"}]), "eeee"),
    # language:response_language
    (240, "Решётка — это структура, в которой точки расположены регулярно, как клетки в тетради."),
    (240, "A lattice is a regular arrangement of points, like the squares of a notebook."),
    (240, "12345 !!! 678"),
    (1108, "ಹ್ಯಾಂಬರ್ಗರ್ ಒಂದು ರೀತಿಯ ಸ್ಯಾಂಡ್ವಿಚ್ ಆಗಿದೆ ಎಂದು ಹಲವರು ಹೇಳುತ್ತಾರೆ."),
    (1108, "Hamburgers are sandwiches, some say."),
    (1154, "ਸਾਫਟਵੇਅਰ ਇੰਜੀਨੀਅਰ ਦੇ ਤਕਨੀਕੀ ਹੁਨਰਾਂ ਦਾ ਮੁਲਾਂਕਣ ਕਰਨ ਲਈ ਇੱਕ ਰੂਬਰਿਕ।"),
    # length_constraints:number_sentences (less than 6; at least 20)
    (1268, LOREM),
    (1268, "One. Two. Three. Four. Five."),
    (1268, "One. Two. Three. Four. Five. Six."),
    (1268, "Mr. A. B. Smith went to Washington D.C. in Jan. 1999 and met J. Doe. They spoke."),
    (292, " ".join(f"Sentence number {i} is here." for i in range(20))),
    (292, " ".join(f"Sentence number {i} is here." for i in range(19))),
    (292, "\n".join(f"Line {i}, then Mr. X said hi!" for i in range(25))),
    # length_constraints:number_paragraphs (2)
    (1082, "First paragraph.\n***\nSecond paragraph."),
    (1082, "First *** Second *** Third"),
    (1082, "*** First ***\nSecond ***"),
    (1082, "First\n***\n\n***\nSecond"),
    (1082, "First****Second"),
    (1082, "Only one paragraph."),
    # length_constraints:number_words (less than 300; at least 300)
    (164, words(299)),
    (164, words(300)),
    (343, words(300)),
    (343, words(299) + " don't"),
    (343, "naïve café " * 150),
    # length_constraints:nth_paragraph_first_word (2 paragraphs, 1st starts with "realising")
    (2215, "Realising my goals, I applied.\n\nSecond paragraph here."),
    (2215, "\"Realising\" was the word.\n\nSecond."),
    (2215, "realising's meaning.\n\nSecond."),
    (2215, "\n\nRealising this.\n\nSecond."),
    (2215, "Realising.\n\nSecond.\n\nThird."),
    (2215, "Realizing my goals.\n\nSecond."),
    (181, "Aliens!\n\nPresident Smith said hi.\n\nc\n\nd\n\ne\n\nf"),
    (181, "Aliens!\n\nPresident, Smith said hi.\n\nc\n\nd\n\ne"),
    # detectable_content:number_placeholders (7)
    (1372, "[a] [b] [c] [d] [e] [f] [g]"),
    (1372, "[a] [b] [c] [d] [e] [f]"),
    (1372, "[[a]] [b] [c] [d] [e] [f] [g\nh]"),
    (1372, "[] [] [] [] [] [] []"),
    # detectable_content:postscript
    (1246, "A poem.\nP.P.S. Buy it."),
    (1246, "A poem.\np. p. s remember"),
    (1246, "A poem.\nPPS buy"),
    (1246, "A poem.\nP.S. buy"),
    (1620, "Hello.\nP.S. bye"),
    (1620, "Hello.\nP.S bye"),
    (1620, "Hello.\nP.P.S. bye"),
    (1620, "Hello. p. s. bye"),
    # detectable_format:number_bullet_lists (4)
    (1634, "* one\n* two\n* three\n* four"),
    (1634, "* one\n- two\n  * three\n-four"),
    (1634, "**Bold**\n* one\n* two\n* three\n* four"),
    (1634, "* one\n* two\n* three\n* four\n* five"),
    (1634, "*\nfoo\n* two\n* three"),
    (1634, "Intro:\n\n\n* one\n* two\n* three\n* four\n* note"),
    # detectable_format:constrained_response
    (227, "My answer is yes."),
    (227, "Well... My answer is maybe. Probably."),
    (227, "my answer is yes."),
    (227, "My answer is yes"),
    # detectable_format:number_highlighted_sections (3)
    (168, "*one* and *two* and *three*"),
    (168, "**one** *two*"),
    (168, "*one* * * *two*"),
    (168, "**a** **b** **c**"),
    (168, "*a\nb* *c*"),
    # detectable_format:multiple_sections (SECTION 3; Section 4)
    (357, "SECTION 1\nHarry.\nSECTION 2\nDog.\nSECTION 3\nEnd."),
    (357, "Section 1\nHarry.\nSection 2\nDog.\nSection 3\nEnd."),
    (357, "SECTION X\nHarry.\nSECTION 2\nDog.\nSECTION3\nEnd."),
    (1131, "Section 1 a Section 2 b Section 3 c Section 4 d"),
    (inline(-3, ["detectable_format:multiple_sections"], [{"section_spliter": "Day", "num_sections": 2}]), "Day 1: go. Day 2: come."),
    (inline(-3, ["detectable_format:multiple_sections"], [{"section_spliter": "Day", "num_sections": 2}]), "Day one: go. Today 2 things."),
    # detectable_format:json_format
    (13, "```json\n{\"history\": \"old\"}\n```"),
    (13, "{'history': 'old'}"),
    (13, "NaN"),
    (13, "[1, 2,]"),
    (13, "Here is the JSON:\n{\"a\": 1}"),
    (13, "```JSON\n[1, -Infinity, 1e400]\n```"),
    (13, "```\n{}\n```"),
    (13, "```json```[1]"),
    (13, "1" * 4301),
    (13, "1" * 4300),
    (13, "\"\\ud800\""),
    (13, "{\"a\": \"tab\there\"}"),
    (13, "{\"a\" : [1, {\"b\": null}], \"c\": true}   "),
    (13, "{\"a\": 1,}"),
    (13, "01"),
    # detectable_format:title
    (1322, "<<Kotlin vs Java>>\nText."),
    (1322, "<< >>\nText."),
    (1322, "<<a\nb>>"),
    (1322, "<<<x>>>"),
    (1322, "No title here."),
    # combination:two_responses
    (247, "Rap one.\n******\nRap two."),
    (247, "Same ****** Same"),
    (247, "A ****** B ****** C"),
    (247, "****** A ****** B ******"),
    (247, "A ******* B"),
    (247, "A ************ B"),
    # combination:repeat_prompt
    (288, "Is ballistics (the study of the motion of projectiles) an actual science? Yes, it is."),
    (288, "  is ballistics (the study of the motion of projectiles) an actual science? yes"),
    (288, "Sure!\nIs ballistics (the study of the motion of projectiles) an actual science? Yes."),
    (288, "Is ballistics an actual science? Yes."),
    # startend:end_checker
    (1220, "A poem.\nIs there anything else I can help with?"),
    (1220, "A poem.\n\"Is there anything else I can help with?\"  "),
    (1220, "A poem. is there anything else i can help with?"),
    (1220, "A poem.\nIs there anything else I can help with?\nBye!"),
    (1220, "Is there anything else I can help with"),
    # change_case:capital_word_frequency (at least 3; less than 20)
    (1592, "We need SOLAR, WIND and HYDRO power."),
    (1592, "We need SOLAR and WIND power."),
    (1592, "I think U.S.A is big."),
    (1592, "DON'T STOP."),
    (1592, "HELLO,world and OK"),
    (1592, "\"WOW\" (BIG) [DEAL]"),
    (1592, "The CAN'T-STOP MOVEMENT... GO!"),
    (1996, " ".join(["LOUD"] * 19)),
    (1996, " ".join(["LOUD"] * 20)),
    # change_case:english_capital
    (1645, "WHO IS SHELDON? A RIDDLE FOR YOU TO SOLVE TODAY."),
    (1645, "WHO IS Sheldon?"),
    (1645, "ЭТО ОЧЕНЬ ХОРОШИЙ РУССКИЙ ТЕКСТ ДЛЯ ПРОВЕРКИ."),
    (1645, "123 !!!"),
    (1645, "ǅ IS TITLECASE"),
    # change_case:english_lowercase
    (202, "another word for engravings is etchings, which are made by cutting."),
    (202, "Another word for engravings is etchings."),
    (202, "это очень хороший русский текст для проверки."),
    (202, "Sure! Here it is:\nanother word for engravings is etchings."),
    # punctuation:no_comma
    (1001, "Hark thee to Kyoto then to Osaka."),
    (1001, "Hark, thee."),
    (1001, "Hark， thee."),
    (1001, "Sure, here is thine plan:\nHark thee to Kyoto."),
    # startend:quotation
    (219, "\"Yes, she is.\""),
    (219, "\""),
    (219, "  \"a\"  \n"),
    (219, "“Yes.”"),
    (219, "Here you go:\n\"Yes, she is.\""),
    # several instructions at once
    (1000, "*Part one* *Part two* *Part three* " + words(300)),
    (1000, "*Part one*, *Part two* " + words(10)),
]

# Hand-written texts for the sentence and word tokenizers.
TEXTS = [
    LOREM,
    "",
    "   ",
    "Hello world",
    "Hello. World.",
    "He said \"Stop.\" Then he left.",
    "(Sentence one.) Sentence two.",
    "Is it? Yes! Really?! Okay.",
    "Very bad acting!!! I promise.",
    "The U.S.A. is big. The U.K. is not.",
    "I met J. R. R. Tolkien in 1955. He was 63.",
    "It cost $3.88. Then 4.5 dollars... Then none.",
    "Wait . . . what? Oh . . . okay.",
    "Item 1.\nItem 2.\n\nNew paragraph. end",
    "'Tis the season. 'twas fun. I cannot go, gonna stay. Gimme that! Wanna see?",
    "Don't STOP! I'M HERE. They'll come; we're ready. O'Neil's dog.",
    "“Quoted.” ‘Single.’ «French.» Next one.",
    "A -- B --- C. Figure‒dash – en — em ― bar.",
    "Prices: 1,000 and 2,5; ratio 3:4, time 10:30.",
    "Email me at a@b.com #tag 50% & more; OK?",
    "Mr. Smith vs. Mrs. Jones etc. went home. St. Louis is a city.",
    "Ends with a comma,",
    "Ends with colon:",
    "Trailing spaces.   \n\n  ",
    "*Bold* and **strong** text. `code` and ``quoted'' text.",
    "The end.\" Next sentence.",
    "The end.) (Next) sentence.",
    "One.Two.Three. Four",
    "no capitals at all. second sentence here",
    "ALL CAPS SENTENCE. ANOTHER ONE!",
    "Нет. Да. Может быть.",
    "हिंदी वाक्य। दूसरा वाक्य.",
    "Tab\tseparated.\tWords.",
    "What?\"No!\" she said.",
    "He left...She stayed.",
    "a. b. c. d.",
    "Dr.Smith and Co.Ltd. are here. Fine.",
    # Punkt's heuristics: abbreviation + frequent sentence starter, abbreviation + orthography,
    # initials, ordinal numbers, collocations.
    "He joined Acme Corp. The firm grew. It sold to Widget Inc. However, nobody cared.",
    "It happened on Jan. 5 and on Feb. 6. Then it ended.",
    "The 2. Bundesliga is a league. It is German. He came 3. in the race.",
    "Johann S. Bach wrote music. He died in 1750. J. S. Bach was German.",
    "See No. 5 for details. Thanks. Call Gen. Lee now.",
    "The results were in the 1960s. among the best. Among them, one.",
]

FRAGMENTS = [
    "the", "The", "THE", "cat", "Cat", "CAT", "Mr.", "Dr.", "U.S.", "e.g.", "i.e.", "etc.", "St.",
    "Jan.", "No.", "vs.", "a.m.", "J.", "A.", "I", "I'm", "don't", "DON'T", "can't", "cannot",
    "gonna", "wanna", "'tis", "O'Neil", "it's", "we'll", "they're", "3.14", "1,000", "2.", "10:30",
    "50%", "$5", "#1", "@home", "&", ";", ":", ",", ".", "!", "?", "...", ". . .", "--", "-", "'",
    "\"", "(", ")", "[", "]", "{", "}", "<", ">", "*", "**", "`", "``", "''", "“", "”", "‘", "’",
    "«", "»", "—", "–", "\n", "\n\n", "  ", "\t", "naïve", "Café", "ÉCOLE", "Москва", "МОСКВА",
    "हिंदी", "東京", "ǅ", "İstanbul", "x.y", "a.b.c.", "OK.", "Yes!", "No?", "(yes.)", "\"Hi.\"",
    "'ok'", "end.\"", "end.)", "...and", "HELLO,world", "well,", "so:", "ok;", "NASA's",
]


def fuzz_texts(n, seed):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        k = rnd.randint(1, 30)
        parts = []
        for _ in range(k):
            parts.append(rnd.choice(FRAGMENTS))
            parts.append(rnd.choice([" ", " ", " ", "", "\n", "  "]))
        out.append("".join(parts))
    return out


LANGUAGE_TEXTS = [
    "This is clearly an English sentence about the weather today.",
    "Dies ist ein deutscher Satz über das Wetter von heute.",
    "Questa è una frase italiana sul tempo di oggi.",
    "Esta é uma frase em português sobre o tempo de hoje.",
    "Tämä on suomenkielinen lause tämän päivän säästä.",
    "Это русское предложение о сегодняшней погоде.",
    "Това е българско изречение за времето днес.",
    "هذه جملة عربية عن الطقس اليوم.",
    "این یک جمله فارسی درباره هوای امروز است.",
    "یہ آج کے موسم کے بارے میں ایک اردو جملہ ہے۔",
    "यह आज के मौसम के बारे में एक हिंदी वाक्य है।",
    "हे आजच्या हवामानाबद्दल एक मराठी वाक्य आहे.",
    "यो आजको मौसमको बारेमा नेपाली वाक्य हो।",
    "এটি আজকের আবহাওয়া সম্পর্কে একটি বাংলা বাক্য।",
    "આ આજના હવામાન વિશેનું ગુજરાતી વાક્ય છે.",
    "ਇਹ ਅੱਜ ਦੇ ਮੌਸਮ ਬਾਰੇ ਇੱਕ ਪੰਜਾਬੀ ਵਾਕ ਹੈ।",
    "இது இன்றைய வானிலை பற்றிய தமிழ் வாக்கியம்.",
    "ఇది ఈరోజు వాతావరణం గురించి తెలుగు వాక్యం.",
    "ಇದು ಇಂದಿನ ಹವಾಮಾನದ ಬಗ್ಗೆ ಕನ್ನಡ ವಾಕ್ಯ.",
    "Đây là một câu tiếng Việt về thời tiết hôm nay.",
    "이것은 오늘 날씨에 관한 한국어 문장입니다.",
    "Hii ni sentensi ya Kiswahili kuhusu hali ya hewa ya leo.",
    "นี่คือประโยคภาษาไทยเกี่ยวกับสภาพอากาศวันนี้",
    "12345 678 !!!",
    "",
    "ok",
    "Hi",
    "Hello мир",
    "ALL CAPITAL ENGLISH TEXT ABOUT A RIDDLE",
    "all lowercase english text about a riddle",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official_dir", help="directory with the official instructions*.py and utils.py")
    ap.add_argument("--data", default=DEFAULT_DATA, help="IFEval input_data.jsonl")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()

    import nltk

    tmp = tempfile.mkdtemp(prefix="ifeval_nltk_")
    write_punkt_tab(tmp)
    nltk.data.path.insert(0, tmp)

    def no_download(*a, **k):
        raise RuntimeError("make_ifeval_fixtures.py never downloads NLTK data")

    nltk.download = no_download

    import langdetect
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0

    util, utils = load_official(os.path.abspath(args.official_dir))

    rows = {}
    with open(args.data, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[r["key"]] = r

    cases = []
    for row, response in CASES:
        row = rows[row] if isinstance(row, int) else row
        for inst, kw in zip(row["instruction_id_list"], row["kwargs"]):
            letter = (kw or {}).get("letter")
            assert inst != "keywords:letter_frequency" or (len(letter) == 1 and letter.isascii() and letter.isalpha()), row["key"]
        inp = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"], prompt=row["prompt"], kwargs=row["kwargs"])
        strict = utils.test_instruction_following_strict(inp, response).follow_instruction_list
        loose = utils.test_instruction_following_loose(inp, response).follow_instruction_list
        cases.append({"row": {k: row[k] for k in ("key", "prompt", "instruction_id_list", "kwargs")}, "response": response, "strict": strict, "loose": loose})

    texts = []
    for t in TEXTS + fuzz_texts(160, seed=20240611):
        texts.append({
            "text": t,
            "sentences": util._get_sentence_tokenizer().tokenize(t),
            "count_sentences": util.count_sentences(t),
            "count_words": util.count_words(t),
            "tokens": util.nltk.word_tokenize(t),
        })

    languages = []
    for t in LANGUAGE_TEXTS:
        try:
            lang = langdetect.detect(t)
        except langdetect.LangDetectException:
            lang = None
        languages.append({"text": t, "language": lang})

    import importlib.metadata as md

    out = {
        "about": "Verdicts of the official IFEval checkers; made by tools/make_ifeval_fixtures.py (see its docstring).",
        "generated_with": {
            "python": sys.version.split()[0],
            "nltk": md.version("nltk"),
            "langdetect": md.version("langdetect"),
        },
        "cases": cases,
        "texts": texts,
        "languages": languages,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    n_inst = sum(len(c["strict"]) for c in cases)
    print(f"wrote {args.out}: {len(cases)} cases ({n_inst} instructions), {len(texts)} texts, {len(languages)} language texts")


if __name__ == "__main__":
    main()
