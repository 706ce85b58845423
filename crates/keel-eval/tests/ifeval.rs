//! IFEval scoring: keel's checkers against the official ones (the oracle fixture made by
//! tools/make_ifeval_fixtures.py with the official Python code), hand-written cases from the
//! benchmark's own rows for each of the 25 instruction types, the real data file, and
//! robustness on garbage and huge responses.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use keel_eval::ifeval::{
    self, count_capital_words, count_sentences, count_words, detect_language, loose_variants, parse_ifeval_line,
    read_ifeval, score, sentences, word_tokenize, IfevalItem, IfevalScores, IfevalVerdict, Instruction,
    INSTRUCTION_IDS,
};
use serde_json::{json, Value};

fn data_path() -> PathBuf {
    keel_testkit::shared_data().join("ifeval/input_data.jsonl")
}

fn fixture() -> &'static Value {
    static F: OnceLock<Value> = OnceLock::new();
    F.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ifeval_oracle.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    })
}

fn items() -> &'static HashMap<i64, IfevalItem> {
    static I: OnceLock<HashMap<i64, IfevalItem>> = OnceLock::new();
    I.get_or_init(|| read_ifeval(&data_path()).unwrap().into_iter().map(|i| (i.key, i)).collect())
}

fn item(key: i64) -> &'static IfevalItem {
    &items()[&key]
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// The oracle: the official checkers' verdicts
// ---------------------------------------------------------------------------------------------

#[test]
fn verdicts_equal_the_official_checkers_on_every_fixture_case() {
    let cases = fixture()["cases"].as_array().unwrap();
    assert!(cases.len() >= 100, "the fixture has only {} cases", cases.len());
    let mut wrong = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let item = parse_ifeval_line(&case["row"].to_string()).unwrap();
        let response = case["response"].as_str().unwrap();
        let got = score(&item, response);
        let want = IfevalVerdict { strict: bools(&case["strict"]), loose: bools(&case["loose"]) };
        if got != want {
            wrong.push(format!(
                "case {n} (row {}, {:?}): response {:?}: keel {got:?}, official {want:?}",
                item.key, case["row"]["instruction_id_list"], response
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ from the official checkers:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_fixture_covers_all_25_instruction_types_passing_and_failing() {
    let mut seen: BTreeMap<String, [bool; 2]> = BTreeMap::new();
    for case in fixture()["cases"].as_array().unwrap() {
        for (id, pass) in case["row"]["instruction_id_list"].as_array().unwrap().iter().zip(bools(&case["strict"])) {
            seen.entry(id.as_str().unwrap().to_string()).or_default()[pass as usize] = true;
        }
    }
    for id in INSTRUCTION_IDS {
        assert_eq!(seen.get(id), Some(&[true, true]), "{id}: the fixture needs a passing and a failing response");
    }
    // Some case must pass loosely but not strictly.
    assert!(fixture()["cases"].as_array().unwrap().iter().any(|c| bools(&c["strict"]) != bools(&c["loose"])));
}

#[test]
fn sentences_words_and_tokens_equal_nltks() {
    let texts = fixture()["texts"].as_array().unwrap();
    assert!(texts.len() >= 150);
    let mut wrong = Vec::new();
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let want_sentences: Vec<String> =
            t["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let want_tokens: Vec<String> =
            t["tokens"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let got_sentences = sentences(text);
        if got_sentences != want_sentences || count_sentences(text) != t["count_sentences"].as_u64().unwrap() as usize {
            wrong.push(format!("sentences of {text:?}: keel {got_sentences:?}, NLTK {want_sentences:?}"));
        }
        if count_words(text) != t["count_words"].as_u64().unwrap() as usize {
            wrong.push(format!("word count of {text:?}: keel {}, NLTK {}", count_words(text), t["count_words"]));
        }
        let got_tokens = word_tokenize(text);
        if got_tokens != want_tokens {
            wrong.push(format!("word_tokenize({text:?}): keel {got_tokens:?}, NLTK {want_tokens:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} differences:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn language_detection_equals_python_langdetect_seeded() {
    for t in fixture()["languages"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(detect_language(text).as_deref(), t["language"].as_str(), "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The data file
// ---------------------------------------------------------------------------------------------

#[test]
fn the_real_data_file_parses_into_541_items_with_every_instruction() {
    let items = read_ifeval(&data_path()).unwrap();
    assert_eq!(items.len(), 541);
    let raw = std::fs::read_to_string(data_path()).unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (item, line) in items.iter().zip(raw.lines().filter(|l| !l.trim().is_empty())) {
        let v: Value = serde_json::from_str(line).unwrap();
        let ids: Vec<&str> = v["instruction_id_list"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        assert_eq!(item.key, v["key"].as_i64().unwrap());
        assert_eq!(item.prompt, v["prompt"].as_str().unwrap());
        assert_eq!(item.instructions.iter().map(Instruction::id).collect::<Vec<_>>(), ids, "row {}", item.key);
        for i in &item.instructions {
            *counts.entry(i.id()).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 25, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 834);
    assert_eq!(counts["punctuation:no_comma"], 66);
    assert_eq!(counts["length_constraints:number_words"], 52);
    // Typed arguments, parsed once.
    match &item(1000).instructions[2] {
        Instruction::NumberWords { num_words: 300, relation: ifeval::Relation::AtLeast } => {}
        other => panic!("{other:?}"),
    }
    match &item(1122).instructions.iter().find(|i| i.id() == "keywords:letter_frequency").unwrap() {
        Instruction::LetterFrequency { letter: '#', frequency: 4, relation: ifeval::Relation::AtLeast } => {}
        other => panic!("{other:?}"),
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("keel-ifeval-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn malformed_lines_are_errors_naming_file_and_line() {
    let good = r#"{"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}"#;
    let cases = [
        ("json", format!("{good}\n\n{{\"key\": 2, \"prompt\": \n"), ":3:", "JSON"),
        ("id", format!("{good}\n{}\n", good.replace("punctuation:no_comma", "punctuation:no_colon")), ":2:", "punctuation:no_colon"),
        (
            "kwarg",
            format!("{good}\n{}\n", r#"{"key": 3, "prompt": "p", "instruction_id_list": ["keywords:frequency"], "kwargs": [{"keyword": "a", "relation": "at least", "frequency": null}]}"#),
            ":2:",
            "frequency",
        ),
        (
            "relation",
            r#"{"key": 3, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5, "relation": "at most"}]}"#.to_string(),
            ":1:",
            "at most",
        ),
        (
            "lengths",
            r#"{"key": 3, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"], "kwargs": [{}]}"#.to_string(),
            ":1:",
            "kwargs",
        ),
        (
            "nth",
            r#"{"key": 3, "prompt": "p", "instruction_id_list": ["length_constraints:nth_paragraph_first_word"], "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}]}"#.to_string(),
            ":1:",
            "nth_paragraph",
        ),
        (
            "language",
            r#"{"key": 3, "prompt": "p", "instruction_id_list": ["language:response_language"], "kwargs": [{"language": "xx"}]}"#.to_string(),
            ":1:",
            "xx",
        ),
        (
            "extra",
            r#"{"key": 3, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"num_words": 5}]}"#.to_string(),
            ":1:",
            "num_words",
        ),
    ];
    for (name, text, line, what) in cases {
        let p = temp_file(name, &text);
        let err = format!("{:#}", read_ifeval(&p).unwrap_err());
        std::fs::remove_file(&p).ok();
        assert!(err.contains(&format!("{}{line}", p.display())), "{name}: {err}");
        assert!(err.contains(what), "{name}: {err}");
    }
    // null values mean "not given" (the Hugging Face copy of the data has every key, mostly null).
    let hf = r#"{"key": 7, "prompt": "p", "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5, "relation": "less than", "keyword": null, "num_highlights": null}]}"#;
    let item = parse_ifeval_line(hf).unwrap();
    assert!(matches!(
        item.instructions[0],
        Instruction::NumberWords { num_words: 5, relation: ifeval::Relation::LessThan }
    ));
    let missing = std::env::temp_dir().join("keel-ifeval-does-not-exist.jsonl");
    assert!(format!("{:#}", read_ifeval(&missing).unwrap_err()).contains("does-not-exist"));
}

// ---------------------------------------------------------------------------------------------
// Hand-written cases on the benchmark's own rows: each of the 25 types passes and fails
// ---------------------------------------------------------------------------------------------

/// (row key, instruction id, response, strict verdict expected for that instruction)
const UNIT_CASES: &[(i64, &str, &str, bool)] = &[
    (2567, "keywords:existence", "The finale was less scary than I thought.", true),
    (2567, "keywords:existence", "The finale was scary.", false),
    (1733, "keywords:frequency", "He replied. She replied.", true),
    (1733, "keywords:frequency", "He replied, and she answered.", false),
    (1580, "keywords:forbidden_words", "Sam learned to balance on two wheels.", true),
    (1580, "keywords:forbidden_words", "Sam can balance.", false),
    (1580, "keywords:forbidden_words", "Sam cannot stop riding; scan the road.", true),
    (1130, "keywords:letter_frequency", "A quiz.", true),
    (1130, "keywords:letter_frequency", "Tea.", true),
    (1130, "keywords:letter_frequency", "A tricky quiz about a chesterfield.", false),
    // Rows whose "letter" is not a letter: keel counts the given character (module notes).
    (1122, "keywords:letter_frequency", "#one #two #three #four", true),
    (1122, "keywords:letter_frequency", "#one #two #three", false),
    (1129, "keywords:letter_frequency", "Yum! Yum! Yum! Yum! Yum! Yum!", true),
    (1129, "keywords:letter_frequency", "Yum! Yum!", false),
    (
        240,
        "language:response_language",
        "Решётка — это набор точек, расположенных в строгом порядке, как клетки в тетради.",
        true,
    ),
    (240, "language:response_language", "A lattice is a set of points arranged in a regular pattern.", false),
    (240, "language:response_language", "1 2 3 4 5", true),
    (1268, "length_constraints:number_sentences", "I was stressed. I breathed. It passed.", true),
    (1268, "length_constraints:number_sentences", "One. Two. Three. Four. Five. Six. Seven.", false),
    (1268, "length_constraints:number_sentences", "Dr. Smith met Mr. Jones at 5 p.m. today. It went well.", true),
    (1082, "length_constraints:number_paragraphs", "He woke up in a game.\n***\nHe found the exit.", true),
    (1082, "length_constraints:number_paragraphs", "He woke up in a game.\n\nHe found the exit.", false),
    (164, "length_constraints:number_words", "A short essay about a show.", true),
    (209, "length_constraints:number_words", "Sleep well.", false),
    (
        2215,
        "length_constraints:nth_paragraph_first_word",
        "Realising, after ten years, that I want more.\n\nSo here I am.",
        true,
    ),
    (
        2215,
        "length_constraints:nth_paragraph_first_word",
        "After ten years I want more.\n\nRealising this, I apply.",
        false,
    ),
    (1372, "detectable_content:number_placeholders", "[name] [date] [place] [fish] [tank] [price] [hours]", true),
    (1372, "detectable_content:number_placeholders", "[name] visited the aquarium.", false),
    (1246, "detectable_content:postscript", "Roses are red.\n\nP.P.S. Buy now.", true),
    (1246, "detectable_content:postscript", "Roses are red.\n\nP.S. Buy now.", false),
    (1620, "detectable_content:postscript", "Hello.\n\np.s. see you", true),
    (1634, "detectable_format:number_bullet_lists", "* Mount\n* Wire\n* Calibrate\n- Clean up", true),
    (1634, "detectable_format:number_bullet_lists", "* Mount\n* Wire\n* Calibrate", false),
    (227, "detectable_format:constrained_response", "My answer is no.", true),
    (227, "detectable_format:constrained_response", "No.", false),
    (168, "detectable_format:number_highlighted_sections", "*Love* is *work*, says *everyone*.", true),
    (168, "detectable_format:number_highlighted_sections", "*Love* is work.", false),
    (357, "detectable_format:multiple_sections", "SECTION 1 Harry. SECTION 2 Dog. SECTION 3 Walk.", true),
    (357, "detectable_format:multiple_sections", "SECTION 1 Harry. SECTION 2 Dog.", false),
    (13, "detectable_format:json_format", "```json\n{\"park\": \"Prospect Park\", \"opened\": 1867}\n```", true),
    (13, "detectable_format:json_format", "Prospect Park opened in 1867.", false),
    (1322, "detectable_format:title", "<<Kotlin vs Java>>\nBoth run on the JVM.", true),
    (1322, "detectable_format:title", "Kotlin vs Java\nBoth run on the JVM.", false),
    (1098, "combination:two_responses", "Allah\n******\nJehovah", true),
    (1098, "combination:two_responses", "Allah", false),
    (
        288,
        "combination:repeat_prompt",
        "Is ballistics (the study of the motion of projectiles) an actual science? Yes.",
        true,
    ),
    (288, "combination:repeat_prompt", "Yes, ballistics is a science.", false),
    (1220, "startend:end_checker", "Two strangers, one latte.\nIs there anything else I can help with?", true),
    (1220, "startend:end_checker", "Two strangers, one latte.", false),
    (1592, "change_case:capital_word_frequency", "SOLAR and WIND beat COAL.", true),
    (1592, "change_case:capital_word_frequency", "Solar and wind beat coal.", false),
    (1645, "change_case:english_capital", "WHO IS SHELDON? A RIDDLE FOR YOU TO SOLVE TODAY.", true),
    // langdetect (so the official checker too) takes this all-capital sentence for German.
    (1645, "change_case:english_capital", "WHO KNOCKS ON THE DOOR AND CALLS EVERYONE A GENIUS?", false),
    (1645, "change_case:english_capital", "Who knocks on the door?", false),
    (1051, "change_case:english_lowercase", "dear sam, please go and vote on tuesday. it matters a lot.", true),
    (1051, "change_case:english_lowercase", "Dear Sam, please go and vote.", false),
    (32, "punctuation:no_comma", "A limerick about limericks is hard to write well.", true),
    (32, "punctuation:no_comma", "A limerick, about limericks.", false),
    (281, "startend:quotation", "\"Why did the XML file break up? Too many tags.\"", true),
    (281, "startend:quotation", "Why did the XML file break up? Too many tags.", false),
];

fn instruction<'a>(item: &'a IfevalItem, id: &str) -> (usize, &'a Instruction) {
    item.instructions
        .iter()
        .enumerate()
        .find(|(_, i)| i.id() == id)
        .unwrap_or_else(|| panic!("row {} has no {id}", item.key))
}

#[test]
fn each_instruction_type_passes_and_fails_on_hand_written_responses() {
    let mut covered: BTreeMap<&str, [bool; 2]> = BTreeMap::new();
    for &(key, id, response, want) in UNIT_CASES {
        let item = item(key);
        let (index, inst) = instruction(item, id);
        assert_eq!(inst.check_strict(response), want, "row {key} {id}: {response:?}");
        assert_eq!(score(item, response).strict[index], want, "row {key} {id}: {response:?}");
        covered.entry(id).or_default()[want as usize] = true;
    }
    for id in INSTRUCTION_IDS {
        assert_eq!(covered.get(id), Some(&[true, true]), "{id} needs a passing and a failing unit case");
    }
}

#[test]
fn loose_scoring_forgives_a_first_or_last_line_and_asterisks() {
    // (row, id, response, strict, loose)
    let cases: &[(i64, &str, &str, bool, bool)] = &[
        (
            288,
            "combination:repeat_prompt",
            "Sure, here it is:\nIs ballistics (the study of the motion of projectiles) an actual science? Yes.",
            false,
            true,
        ),
        (219, "startend:quotation", "Sure, here it is:\n\"Kareena is a fine actor.\"", false, true),
        (1220, "startend:end_checker", "A poem.\nIs there anything else I can help with?\nEnjoy!", false, true),
        (13, "detectable_format:json_format", "Here is the JSON:\n{\"park\": 1}\nHope it helps.", false, true),
        (
            202,
            "change_case:english_lowercase",
            "Sure! Here it is:\netchings is another word for engravings.",
            false,
            true,
        ),
        (1001, "punctuation:no_comma", "Sure, here it is:\nHark thee to Kyoto.", false, true),
        // Deleting `*` rescues a bold title that breaks the constrained answer.
        (227, "detectable_format:constrained_response", "**My answer is yes.**", true, true),
        (227, "detectable_format:constrained_response", "My answer is *yes*.", false, true),
        // Neither removing lines nor stars helps here.
        (1001, "punctuation:no_comma", "One, two.\nThree, four.\nFive, six.", false, false),
    ];
    for &(key, id, response, strict, loose) in cases {
        let item = item(key);
        let (index, inst) = instruction(item, id);
        let v = score(item, response);
        assert_eq!((v.strict[index], v.loose[index]), (strict, loose), "row {key} {id}: {response:?}");
        assert_eq!(inst.check_loose(response), loose);
    }
}

#[test]
fn loose_variants_are_the_official_eight() {
    let v = loose_variants("Intro:\n*a* b\nOutro ");
    assert_eq!(
        v,
        [
            "Intro:\n*a* b\nOutro ",
            "Intro:\na b\nOutro ",
            "*a* b\nOutro",
            "Intro:\n*a* b",
            "*a* b",
            "a b\nOutro",
            "Intro:\na b",
            "a b"
        ]
        .map(String::from)
    );
    assert_eq!(loose_variants("one line"), ["one line", "one line", "", "", "", "", "", ""].map(String::from));
    assert_eq!(loose_variants(""), ["", "", "", "", "", "", "", ""].map(String::from));
}

#[test]
fn blank_responses_fail_every_instruction_strictly_and_loosely() {
    for r in ["", "   ", "\n\n\t", "\u{1c}\u{3000}"] {
        for item in items().values() {
            let v = score(item, r);
            assert!(v.strict.iter().chain(&v.loose).all(|b| !b), "row {} {r:?}: {v:?}", item.key);
        }
    }
}

#[test]
fn counting_helpers_follow_nltk() {
    assert_eq!(count_words("Don't stop—naïve café, 3.5 km!"), 8);
    assert_eq!(count_sentences("Dr. Smith arrived at 5 p.m. today. He left."), 2);
    assert_eq!(count_sentences("Hello world"), 1);
    assert_eq!(count_sentences(""), 0);
    assert_eq!(word_tokenize("I can't go, NASA's rules."), ["I", "ca", "n't", "go", ",", "NASA", "'s", "rules", "."]);
    assert_eq!(count_capital_words("I think U.S.A. and NASA's HELLO,world rule."), 4);
}

#[test]
fn prompt_and_instruction_level_accuracies() {
    let v = [
        IfevalVerdict { strict: vec![true, false], loose: vec![true, true] },
        IfevalVerdict { strict: vec![true], loose: vec![true] },
        IfevalVerdict { strict: vec![false, false, false], loose: vec![false, true, false] },
    ];
    let s = IfevalScores::from_verdicts(&v);
    assert_eq!((s.prompts, s.instructions), (3, 6));
    assert_eq!(s.prompt_level_strict, 1.0 / 3.0);
    assert_eq!(s.prompt_level_loose, 2.0 / 3.0);
    assert_eq!(s.inst_level_strict, 2.0 / 6.0);
    assert_eq!(s.inst_level_loose, 4.0 / 6.0);
    assert_eq!(IfevalScores::from_verdicts(&[]).prompt_level_strict, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

/// One item with every instruction type, for stress inputs.
fn all_types_item() -> IfevalItem {
    let kw = json!([
        {"keywords": ["alpha", "beta"]}, {"keyword": "a", "frequency": 3, "relation": "at least"},
        {"forbidden_words": ["kid", "like"]}, {"letter": "a", "let_frequency": 5, "let_relation": "less than"},
        {"language": "en"}, {"num_sentences": 5, "relation": "at least"}, {"num_paragraphs": 3},
        {"num_words": 100, "relation": "less than"}, {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "so"},
        {"num_placeholders": 2}, {"postscript_marker": "P.S."}, {"num_bullets": 3}, {}, {"num_highlights": 2},
        {"section_spliter": "Section", "num_sections": 2}, {}, {}, {}, {"prompt_to_repeat": "Repeat me."},
        {"end_phrase": "Bye."}, {"capital_frequency": 3, "capital_relation": "at least"}, {}, {}, {}, {}
    ]);
    let row = json!({"key": 0, "prompt": "stress", "instruction_id_list": INSTRUCTION_IDS, "kwargs": kw});
    parse_ifeval_line(&row.to_string()).unwrap()
}

/// A deterministic garbage generator over characters that matter to the checkers.
fn garbage(seed: u64, len: usize) -> String {
    const ALPHABET: &[&str] = &[
        "a",
        "B",
        " ",
        "\n",
        "\n\n",
        ".",
        "!",
        "?",
        ",",
        ":",
        ";",
        "*",
        "**",
        "***",
        "******",
        "-",
        "--",
        "[",
        "]",
        "{",
        "}",
        "\"",
        "'",
        "`",
        "<<",
        ">>",
        "(",
        ")",
        "#",
        "@",
        "P.S.",
        "Section 1",
        "é",
        "Ж",
        "ß",
        "İ",
        "ǅ",
        "\u{301}",
        "\u{1c}",
        "\u{85}",
        "\u{2028}",
        "\u{feff}",
        "日本",
        "हिं",
        "```json",
        "NaN",
        "\\",
        "\t",
        "\r",
        "0",
        "9",
        "...",
        ". . .",
        "'t",
    ];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut s = String::new();
    while s.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s.push_str(ALPHABET[(x >> 33) as usize % ALPHABET.len()]);
    }
    s
}

#[test]
fn garbage_responses_never_panic() {
    let all = all_types_item();
    for seed in 0..300 {
        let r = garbage(seed, (seed as usize * 37) % 700);
        let v = score(&all, &r);
        assert_eq!(v.strict.len(), 25);
        assert!(v.strict.iter().zip(&v.loose).all(|(s, l)| !s || *l), "strict pass must imply loose pass: {r:?}");
        word_tokenize(&r);
        sentences(&r);
    }
    // And every real row on a few of them.
    for item in items().values() {
        for seed in 0..3 {
            score(item, &garbage(seed + 1000, 300));
        }
    }
}

#[test]
fn huge_and_pathological_responses_finish_quickly() {
    let all = all_types_item();
    let mb = 1 << 20;
    let inputs = [
        garbage(7, mb),
        "!".repeat(mb),
        "a.".repeat(mb / 2),
        ". ".repeat(mb / 2),
        "*".repeat(mb),
        "[".repeat(mb),
        "{\"a\":[".repeat(mb / 6),
        "<<".repeat(mb / 2),
        "x".repeat(mb),
        "\n".repeat(mb),
        "Section 1 ".repeat(mb / 10),
        "I can't. ".repeat(mb / 9),
        "-".repeat(mb),
        "'".repeat(mb),
    ];
    for r in &inputs {
        let t = Instant::now();
        let v = score(&all, r);
        assert_eq!(v.loose.len(), 25);
        let head: String = r.chars().take(12).collect();
        eprintln!("{head:?}...: {:?}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(60), "{head:?}...: {:?}", t.elapsed());
    }
}
