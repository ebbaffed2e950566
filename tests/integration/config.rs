//! `tolk check CONFIG`: bad configurations give exit 2 and one line per problem naming the file
//! and key; all problems are reported together; good ones pass.

use tolk_tests::{root, run, tolk};

/// A valid configuration the cases below break one piece at a time.
const GOOD: &str = r#"
[engine]
provider = "local"

[[source]]
id = "stage"
plugin = "tolk.tone"
language = "en"
[source.config]
frequency_hz = 440.0

[[prompt]]
id = "interp"
plugin = "tolk.interpreter"

[[route]]
source = "stage"
to = ["es", "fr"]
voice = "marin"
prompt = "interp"
sinks = ["file"]

[[sink]]
id = "file"
plugin = "tolk.wav"
[sink.config]
path = "out/{lang}.wav"
"#;

/// Runs `tolk check x.toml` on `text` in a fresh directory.
fn check(text: &str) -> tolk_tests::Run {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.toml"), text).unwrap();
    run(tolk().arg("check").arg("x.toml").current_dir(dir.path()))
}

fn errors(r: &tolk_tests::Run) -> Vec<String> {
    r.stderr.lines().filter_map(|l| l.strip_prefix("error: ")).map(str::to_string).collect()
}

#[test]
fn the_good_config_passes() {
    let r = check(GOOD);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("x.toml: ok — 1 source, 2 routes, 1 prompt provider, 2 sink instances"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("stage (en) → es, fr  sinks: file"), "{}", r.stdout);
}

#[test]
fn check_starts_nothing_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.toml"), GOOD).unwrap();
    let r = run(tolk().arg("check").arg("x.toml").current_dir(dir.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["x.toml"], "tolk check created files");
}

#[test]
fn the_shipped_demo_config_passes() {
    let r = run(tolk().arg("check").arg(root().join("configs/demo.toml")));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("3 routes"), "{}", r.stdout);
}

/// (what is broken, replace this, with this, the expected error lines)
const CASES: &[(&str, &str, &str, &[&str])] = &[
    (
        "unknown section",
        "[engine]",
        "[engin]",
        &[
            r#"x.toml: engin: unknown section (did you mean "engine"?) (expected one of: engine, plugins, source, prompt, route, sink, run, listen)"#,
        ],
    ),
    (
        "unknown key",
        "language = \"en\"",
        "language = \"en\"\nlang = \"en\"",
        &["x.toml: source[0].lang: unknown key (expected one of: id, plugin, language, config)"],
    ),
    (
        "wrong type",
        "language = \"en\"",
        "language = 5",
        &["x.toml: source[0].language: invalid type: integer `5`, expected a string"],
    ),
    ("missing key", "language = \"en\"", "", &["x.toml: source[0].language: missing required key"]),
    (
        "missing plugin",
        "plugin = \"tolk.wav\"",
        "plugin = \"tolk.wavv\"",
        &[
            r#"x.toml: sink[0].plugin: no sink plugin with id "tolk.wavv" (did you mean "tolk.wav"?); `tolk plugins` lists what is installed"#,
        ],
    ),
    (
        "plugin of the wrong kind",
        "plugin = \"tolk.tone\"",
        "plugin = \"tolk.captions\"",
        &[r#"x.toml: source[0].plugin: "tolk.captions" is a sink plugin, not a source plugin"#],
    ),
    (
        "duplicate id",
        "[[prompt]]",
        "[[source]]\nid = \"stage\"\nplugin = \"tolk.tone\"\nlanguage = \"de\"\n\n[[prompt]]",
        &[r#"x.toml: source[1].id: duplicate id "stage" (also used by source[0])"#],
    ),
    (
        "invalid id",
        "id = \"stage\"",
        "id = \"Stage 1\"",
        &[
            r#"x.toml: source[0].id: "Stage 1" is not a valid id (lower-case letters, digits, '-' and '_', starting with a letter or digit)"#,
            r#"x.toml: route[0].source: no source with id "stage""#,
        ],
    ),
    (
        "dangling sink reference",
        "sinks = [\"file\"]",
        "sinks = [\"fil\"]",
        &[r#"x.toml: route[0].sinks[0]: no sink with id "fil" (did you mean "file"?)"#],
    ),
    (
        "dangling source reference",
        "source = \"stage\"",
        "source = \"stag\"",
        &[r#"x.toml: route[0].source: no source with id "stag" (did you mean "stage"?)"#],
    ),
    (
        "dangling prompt reference",
        "prompt = \"interp\"",
        "prompt = \"interpreter\"",
        &[r#"x.toml: route[0].prompt: no prompt with id "interpreter" (did you mean "interp"?)"#],
    ),
    (
        "bad source language",
        "language = \"en\"",
        "language = \"english\"",
        &[
            r#"x.toml: source[0].language: "english" is not a language tag (expected a 2- or 3-letter code such as "en", "es", "pt-BR")"#,
        ],
    ),
    (
        "underscore language tag",
        "to = [\"es\", \"fr\"]",
        "to = [\"es\", \"pt_BR\"]",
        &[r#"x.toml: route[0].to[1]: "pt_BR" is not a language tag (BCP-47 uses '-': "pt-BR")"#],
    ),
    (
        "target is the source language",
        "to = [\"es\", \"fr\"]",
        "to = [\"es\", \"EN\"]",
        &[r#"x.toml: route[0].to[1]: "en" is the source's own language"#],
    ),
    ("no target", "to = [\"es\", \"fr\"]", "to = []", &["x.toml: route[0].to: lists no target language"]),
    (
        "target twice",
        "to = [\"es\", \"fr\"]",
        "to = [\"es\", \"es\"]",
        &[r#"x.toml: route[0].to[1]: "es" is listed twice"#],
    ),
    (
        "pair routed twice",
        "[[sink]]",
        "[[route]]\nsource = \"stage\"\nto = [\"de\", \"fr\"]\n\n[[sink]]",
        &["x.toml: route[1].to[1]: stage → fr is already routed by route[0]"],
    ),
    (
        "unknown voice",
        "voice = \"marin\"",
        "voice = \"marine\"",
        &[
            r#"x.toml: route[0].voice: unknown voice "marine" (did you mean "marin"?) (expected one of: alloy, ash, ballad, cedar, coral, echo, marin, sage, shimmer, verse)"#,
        ],
    ),
    (
        "issue 9: a GA-only voice with the legacy protocol",
        "provider = \"local\"",
        "provider = \"local\"\nprotocol = \"legacy\"",
        &[
            r#"x.toml: route[0].voice: voice "marin" is not part of the legacy protocol (expected one of: alloy, ash, ballad, coral, echo, sage, shimmer, verse)"#,
        ],
    ),
    (
        "issue 9: silence_duration_ms beyond what the server takes",
        "provider = \"local\"",
        "provider = \"local\"\nsilence_duration_ms = 10001",
        &["x.toml: engine.silence_duration_ms: 10001 is out of range (0 to 10000)"],
    ),
    (
        "issue 9: prefix_padding_ms beyond what the server takes",
        "provider = \"local\"",
        "provider = \"local\"\nprefix_padding_ms = 20000",
        &["x.toml: engine.prefix_padding_ms: 20000 is out of range (0 to 10000)"],
    ),
    (
        "unknown failure policy",
        "voice = \"marin\"",
        "voice = \"marin\"\non_plugin_failure = \"restrat\"",
        &[
            r#"x.toml: route[0].on_plugin_failure: unknown policy "restrat" (did you mean "restart"?) (expected one of: stop-route, restart, exit)"#,
        ],
    ),
    (
        "unknown provider",
        "provider = \"local\"",
        "provider = \"opneai\"",
        &[
            r#"x.toml: engine.provider: unknown provider "opneai" (did you mean "openai"?) (expected one of: local, openai, openai-translate, azure)"#,
        ],
    ),
    (
        "API key in the file",
        "provider = \"local\"",
        "provider = \"openai\"\napi_key = \"sk-secret\"",
        &[
            "x.toml: engine.api_key: API keys do not belong in config files: put the key in an environment variable and name it with api_key_env",
        ],
    ),
    (
        "azure without deployment",
        "provider = \"local\"",
        "provider = \"azure\"",
        &[r#"x.toml: engine.model: provider "azure" needs the deployment name as model"#],
    ),
    (
        "engine URL not a WebSocket",
        "provider = \"local\"",
        "url = \"https://api.openai.com/v1/realtime\"",
        &[r#"x.toml: engine.url: "https://api.openai.com/v1/realtime" is not a WebSocket URL (ws:// or wss://)"#],
    ),
    (
        "key variable name",
        "provider = \"local\"",
        "api_key_env = \"MY-KEY\"",
        &[r#"x.toml: engine.api_key_env: "MY-KEY" is not an environment variable name"#],
    ),
    (
        "table instead of array of tables",
        "[[prompt]]\nid = \"interp\"\nplugin = \"tolk.interpreter\"",
        "[prompt]\nid = \"interp\"\nplugin = \"tolk.interpreter\"",
        &[
            "x.toml: prompt: expected an array of tables: write [[prompt]], not [prompt]",
            r#"x.toml: route[0].prompt: no prompt with id "interp""#,
        ],
    ),
    (
        "plugin directory missing",
        "[engine]",
        "[plugins]\npath = \"no-such-dir\"\n\n[engine]",
        &["x.toml: plugins.path[0]: directory ./no-such-dir does not exist"],
    ),
    (
        "wrong type in a plugin's own table",
        "frequency_hz = 440.0",
        "frequency_hz = \"loud\"",
        &[r#"x.toml: source[0].config.frequency_hz: invalid type: string "loud", expected f64"#],
    ),
    (
        "unknown key in a plugin's own table",
        "frequency_hz = 440.0",
        "freq = 440.0",
        &[
            "x.toml: source[0].config.freq: unknown key (expected one of: frequency_hz, amplitude, sample_rate, duration_ms, realtime)",
        ],
    ),
    (
        "a plugin's own validation",
        "frequency_hz = 440.0",
        "frequency_hz = 30000.0",
        &["x.toml: source[0].config.frequency_hz: 30000 Hz must be above 0 and below half the sample rate"],
    ),
    (
        "TOML syntax",
        "voice = \"marin\"",
        "voice = marin",
        &["x.toml: invalid TOML at line 19: string values must be quoted, expected literal string"],
    ),
];

#[test]
fn bad_configs_give_exit_2_and_one_line_per_problem() {
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for (what, from, to, want) in CASES {
        assert!(GOOD.contains(from), "case {what:?}: GOOD has no {from:?}");
        let r = check(&GOOD.replacen(from, to, 1));
        let got = errors(&r);
        if r.code != 2 || got != *want {
            failures
                .push(format!("{what}: exit {}\n  want: {want:?}\n  got:  {got:?}\n  stderr: {}", r.code, r.stderr));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_together() {
    let text = GOOD
        .replace("voice = \"marin\"", "voice = \"marine\"")
        .replace("sinks = [\"file\"]", "sinks = [\"fil\"]")
        .replace("plugin = \"tolk.wav\"", "plugin = \"tolk.wavv\"");
    let r = check(&text);
    assert_eq!(r.code, 2);
    let got = errors(&r);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(r.stderr.lines().last().unwrap().ends_with("x.toml: 3 errors"), "{}", r.stderr);
}

#[test]
fn per_language_sinks_are_created_per_language_and_check_their_own_config() {
    let text = GOOD.replace("path = \"out/{lang}.wav\"", "path = \"out/{lang}.wav\"\nsample_rate = 0");
    let r = check(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let got = errors(&r);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("x.toml: sink[0].config") && got[0].ends_with("(for es)"), "{got:#?}");
    assert!(got[1].ends_with("(for fr)"), "{got:#?}");
}

#[test]
fn a_missing_input_file_is_named() {
    let text = GOOD
        .replace("plugin = \"tolk.tone\"", "plugin = \"tolk.wav\"")
        .replace("frequency_hz = 440.0", "path = \"nowhere.wav\"");
    let r = check(&text);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let got = errors(&r);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with("x.toml: source[0].config.path: "), "{got:#?}");
    assert!(got[0].contains("nowhere.wav"), "{got:#?}");
}
