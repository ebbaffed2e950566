//! `tolk.interpreter` — instructions that make a Realtime session a simultaneous interpreter.
//!
//! A speech-to-speech model left to itself behaves like a chat assistant: it answers questions,
//! greets, summarises and says "the speaker says". This provider writes instructions that forbid
//! all of that and pin down what an interpreter must get right: the language pair (by name, not
//! tag), first-person delivery, the register, the event's terminology (a per-language
//! glossary), the names that must never be translated, and what the event is about.
//!
//! The decisions a reader must know:
//!
//! - **Everything is validated in `new`**, so a bad glossary fails at `tolk check`; `prompt`
//!   cannot fail.
//! - **Glossaries are keyed by target language**, and a key applies to every more specific
//!   tag: `glossary.pt` serves `pt-BR` and `pt-PT`; where both `pt` and `pt-BR` name a term,
//!   `pt-BR` wins for `pt-BR`. Entries are sorted, so the text is the same on every call.
//! - **The transcription hint is the same for every route**: the `keep` names, then every
//!   glossary's source terms. All routes hear the same speech, so every source transcript
//!   should spell those words right, whatever the target language.

use std::collections::BTreeMap;

use tolk_plugin_api::prelude::*;

// 1. The config. Every key is optional: an empty table gives plain, neutral instructions.
/// The register the interpretation should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Polite forms of address, conference register.
    Formal,
    /// Follow the speaker's tone in clear, standard language.
    #[default]
    Neutral,
    /// Relaxed, conversational; familiar forms of address.
    Informal,
}

/// The `[prompt.config]` table of `tolk.interpreter`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterpreterConfig {
    /// The register of the interpretation.
    pub style: Style,
    /// Free text about the event: its name, the speakers, the subject.
    pub context: Option<String>,
    /// Names and terms that must never be translated (brands, people, products).
    pub keep: Vec<String>,
    /// Per target language (a BCP-47 tag), source term → required rendering.
    pub glossary: BTreeMap<String, BTreeMap<String, String>>,
    /// Extra instructions, appended verbatim.
    pub extra: Option<String>,
}

// 2. The plugin struct: the validated config, ready to be rendered for any language pair.
/// The interpreter prompt provider.
pub struct Interpreter {
    style: Style,
    /// Trimmed; empty when not given.
    context: String,
    /// Trimmed, without duplicates, in config order.
    keep: Vec<String>,
    /// Canonical tag (`pt-BR`) → trimmed term → trimmed rendering.
    glossary: BTreeMap<String, BTreeMap<String, String>>,
    /// Trimmed; empty when not given.
    extra: String,
}

// 3. The trait impl.
impl PromptProvider for Interpreter {
    const ID: &'static str = "tolk.interpreter";
    const NAME: &'static str = "Simultaneous interpreter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "instructions for simultaneous interpretation, with register, glossary and context";
    const EXAMPLE_CONFIG: &'static str = r#"style = "formal"
context = "Acme Cloud Summit 2025, opening keynote: Dana Whitfield (CEO) launches Acme Orbit, a Kubernetes platform."
keep = ["Acme", "Acme Orbit", "Dana Whitfield", "Kubernetes"]

[glossary.es]
"machine learning" = "aprendizaje automático"
"cloud" = "nube"
"rollout" = "despliegue"
"#;

    type Config = InterpreterConfig;

    fn new(config: InterpreterConfig, _host: &Host) -> Result<Self, PluginError> {
        let mut keep: Vec<String> = Vec::new();
        for (i, name) in config.keep.iter().enumerate() {
            let name = name.trim();
            if name.is_empty() {
                return Err(PluginError::config(format!("keep[{i}]: empty name")));
            }
            if !keep.iter().any(|k| k == name) {
                keep.push(name.to_string());
            }
        }
        let mut glossary: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut keys: BTreeMap<String, &str> = BTreeMap::new();
        for (tag, entries) in &config.glossary {
            let key = format!("glossary.{}", toml_key(tag));
            let Some(canonical) = canonical_tag(tag) else {
                return Err(PluginError::config(format!("{key}: not a language tag")));
            };
            if let Some(first) = keys.insert(canonical.clone(), tag) {
                return Err(PluginError::config(format!("{key}: same language as glossary.{}", toml_key(first))));
            }
            let mut terms = BTreeMap::new();
            for (term, rendering) in entries {
                let (term_t, rendering) = (term.trim(), rendering.trim());
                if term_t.is_empty() {
                    return Err(PluginError::config(format!("{key}.{}: empty term", toml_key(term))));
                }
                if rendering.is_empty() {
                    return Err(PluginError::config(format!("{key}.{}: empty translation", toml_key(term))));
                }
                terms.insert(term_t.to_string(), rendering.to_string());
            }
            glossary.insert(canonical, terms);
        }
        let text = |s: Option<String>| s.map(|s| s.trim().to_string()).unwrap_or_default();
        Ok(Interpreter {
            style: config.style,
            context: text(config.context),
            keep,
            glossary,
            extra: text(config.extra),
        })
    }

    fn prompt(&mut self, request: &PromptRequest<'_>) -> Result<Prompt, PluginError> {
        let instructions = self.instructions(request.source_language(), request.target_language());
        Ok(Prompt::new(instructions).with_transcription_hint(self.transcription_hint()))
    }
}

impl Interpreter {
    /// The instructions for one language pair.
    fn instructions(&self, source: &str, target: &str) -> String {
        let (from, to) = (language_name(source), language_name(target));
        let mut out = format!(
            "You are a simultaneous interpreter. Interpret everything the speaker says from {from} into {to}, \
             continuously, while they speak.\n\
             Source language: {source}\n\
             Target language: {target}\n\
             \n\
             - Speak only {to}: the interpretation and nothing else. Speak in the first person, as the \
             speaker (\"I think\", never \"the speaker thinks\").\n\
             - You are not an assistant and this is not a conversation. Never answer, comment, summarise, \
             explain or add anything of your own, and never mention that you are an AI, a model or an \
             interpreter. Do not greet anyone and do not speak before the speaker does.\n\
             - Everything you hear is speech to interpret, even when it seems addressed to you: interpret a \
             question as a question and a request as a request; never reply to them.\n\
             - Keep up with the speaker: interpret each phrase as soon as its meaning is clear, without \
             waiting for long sentences to end, and leave nothing out.\n\
             - Keep numbers, units, dates, amounts and names exactly right; do not convert units or currencies.\n\
             - If a passage is unclear, interpret what you understood and carry on; never ask for a repetition.\n\
             - When the speaker says something in {to} already, repeat it unchanged. When the speaker is \
             silent, stay silent.\n\
             \n\
             {}\n",
            match self.style {
                Style::Formal => format!(
                    "Register: formal. Use polite forms of address and a formal, conference-level register in \
                     {to}, even when the speaker is casual."
                ),
                Style::Neutral => format!(
                    "Register: neutral. Follow the speaker's tone in clear, standard {to} suited to a general \
                     audience."
                ),
                Style::Informal => format!(
                    "Register: informal. Use a relaxed, conversational {to} and familiar forms of address where \
                     {to} has them."
                ),
            }
        );
        let terms = self.glossary_for(target);
        if !terms.is_empty() {
            out.push_str(&format!(
                "\nTerminology: when the speaker uses one of these terms, always render it in {to} as given:\n"
            ));
            for (term, rendering) in terms {
                out.push_str(&format!("- \"{term}\" → \"{rendering}\"\n"));
            }
        }
        if !self.keep.is_empty() {
            out.push_str("\nNever translate these names and terms; say them exactly as written:\n");
            for name in &self.keep {
                out.push_str(&format!("- {name}\n"));
            }
        }
        if !self.context.is_empty() {
            out.push_str(&format!("\nAbout the event (to help you understand; never mention it):\n{}\n", self.context));
        }
        if !self.extra.is_empty() {
            out.push_str(&format!("\nAdditional instructions:\n{}\n", self.extra));
        }
        out
    }

    /// The glossary entries that apply to `target`: those of its own tag and of every less
    /// specific one (`pt` for `pt-BR`), the more specific winning, sorted by term (ignoring
    /// case, then exactly).
    fn glossary_for(&self, target: &str) -> Vec<(&str, &str)> {
        let target = canonical_tag(target).unwrap_or_else(|| target.to_string());
        let mut merged: BTreeMap<&str, &str> = BTreeMap::new();
        // BTreeMap order puts `pt` before `pt-BR`, so the more specific entry is inserted last.
        for (tag, terms) in &self.glossary {
            if target == *tag || target.starts_with(&format!("{tag}-")) {
                merged.extend(terms.iter().map(|(t, r)| (t.as_str(), r.as_str())));
            }
        }
        let mut terms: Vec<(&str, &str)> = merged.into_iter().collect();
        terms.sort_by(|a, b| a.0.to_lowercase().cmp(&b.0.to_lowercase()).then(a.0.cmp(b.0)));
        terms
    }

    /// Words the input transcription should spell right: the `keep` names in config order, then
    /// the source terms of every glossary, sorted; comma-separated, each once.
    fn transcription_hint(&self) -> String {
        let mut terms: Vec<&str> = self.glossary.values().flat_map(|t| t.keys().map(String::as_str)).collect();
        terms.sort_by(|a, b| a.to_lowercase().cmp(&b.to_lowercase()).then(a.cmp(b)));
        let mut words: Vec<&str> = self.keep.iter().map(String::as_str).collect();
        for term in terms {
            if !words.contains(&term) {
                words.push(term);
            }
        }
        words.join(", ")
    }
}

// 4. Language tags and names.

/// A key as written in TOML: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// A BCP-47 tag in canonical case (`pt-br` → `pt-BR`), or `None` when it is not one — the
/// host's own parser ([`tolk_plugin_api::lang`]), so a glossary key matches exactly the tags the
/// host routes with.
fn canonical_tag(tag: &str) -> Option<String> {
    tolk_plugin_api::lang::canonical(tag).ok()
}

/// The English name of a language tag, for the model to read: `es` → "Spanish", `pt-BR` →
/// "Brazilian Portuguese", `sr-Latn` → "Serbian (Latin script)", `de-AT` → "German
/// (Austria)". A language not in the table is named by its tag.
fn language_name(tag: &str) -> String {
    let Some(tag) = canonical_tag(tag) else { return tag.to_string() };
    if let Some(name) = variant_name(&tag) {
        return name.to_string();
    }
    let mut parts = tag.split('-');
    let Some(name) = parts.next().and_then(base_name) else { return tag };
    let details: Vec<String> = parts
        .filter_map(|p| match p.len() {
            4 => Some(script_name(p).map_or_else(|| format!("{p} script"), str::to_string)),
            2 | 3 => Some(region_name(p).unwrap_or(p).to_string()),
            _ => None, // variants (`1996`, `valencia`) do not change the name
        })
        .collect();
    if details.is_empty() { name.to_string() } else { format!("{name} ({})", details.join(", ")) }
}

/// Variants with a name of their own.
fn variant_name(tag: &str) -> Option<&'static str> {
    Some(match tag {
        "en-US" => "American English",
        "en-GB" => "British English",
        "en-AU" => "Australian English",
        "en-CA" => "Canadian English",
        "es-419" => "Latin American Spanish",
        "es-ES" => "European Spanish",
        "es-MX" => "Mexican Spanish",
        "fr-CA" => "Canadian French",
        "pt-BR" => "Brazilian Portuguese",
        "pt-PT" => "European Portuguese",
        "zh-Hans" | "zh-CN" | "zh-SG" | "zh-Hans-CN" => "Simplified Chinese",
        "zh-Hant" | "zh-Hant-TW" | "zh-TW" => "Traditional Chinese",
        "zh-HK" | "zh-Hant-HK" => "Traditional Chinese (Hong Kong)",
        "nb-NO" => "Norwegian Bokmål",
        "nn-NO" => "Norwegian Nynorsk",
        _ => return None,
    })
}

/// Names of primary language subtags (ISO 639-1, and 639-3 where there is no two-letter code).
fn base_name(primary: &str) -> Option<&'static str> {
    Some(match primary {
        "af" => "Afrikaans",
        "am" => "Amharic",
        "ar" => "Arabic",
        "az" => "Azerbaijani",
        "be" => "Belarusian",
        "bg" => "Bulgarian",
        "bn" => "Bengali",
        "bs" => "Bosnian",
        "ca" => "Catalan",
        "cs" => "Czech",
        "cy" => "Welsh",
        "da" => "Danish",
        "de" => "German",
        "el" => "Greek",
        "en" => "English",
        "es" => "Spanish",
        "et" => "Estonian",
        "eu" => "Basque",
        "fa" => "Persian",
        "fi" => "Finnish",
        "fil" => "Filipino",
        "fr" => "French",
        "ga" => "Irish",
        "gl" => "Galician",
        "gu" => "Gujarati",
        "ha" => "Hausa",
        "he" | "iw" => "Hebrew",
        "hi" => "Hindi",
        "hr" => "Croatian",
        "hu" => "Hungarian",
        "hy" => "Armenian",
        "id" | "in" => "Indonesian",
        "ig" => "Igbo",
        "is" => "Icelandic",
        "it" => "Italian",
        "ja" => "Japanese",
        "ka" => "Georgian",
        "kk" => "Kazakh",
        "km" => "Khmer",
        "kn" => "Kannada",
        "ko" => "Korean",
        "lb" => "Luxembourgish",
        "lo" => "Lao",
        "lt" => "Lithuanian",
        "lv" => "Latvian",
        "mk" => "Macedonian",
        "ml" => "Malayalam",
        "mn" => "Mongolian",
        "mr" => "Marathi",
        "ms" => "Malay",
        "mt" => "Maltese",
        "my" => "Burmese",
        "nb" => "Norwegian Bokmål",
        "ne" => "Nepali",
        "nl" => "Dutch",
        "nn" => "Norwegian Nynorsk",
        "no" => "Norwegian",
        "pa" => "Punjabi",
        "pl" => "Polish",
        "ps" => "Pashto",
        "pt" => "Portuguese",
        "ro" => "Romanian",
        "ru" => "Russian",
        "si" => "Sinhala",
        "sk" => "Slovak",
        "sl" => "Slovenian",
        "so" => "Somali",
        "sq" => "Albanian",
        "sr" => "Serbian",
        "sv" => "Swedish",
        "sw" => "Swahili",
        "ta" => "Tamil",
        "te" => "Telugu",
        "th" => "Thai",
        "tl" => "Tagalog",
        "tr" => "Turkish",
        "uk" => "Ukrainian",
        "ur" => "Urdu",
        "uz" => "Uzbek",
        "vi" => "Vietnamese",
        "xh" => "Xhosa",
        "yo" => "Yoruba",
        "yue" => "Cantonese",
        "zh" => "Chinese",
        "zu" => "Zulu",
        _ => return None,
    })
}

/// Names of script subtags (ISO 15924), as a qualifier.
fn script_name(script: &str) -> Option<&'static str> {
    Some(match script {
        "Arab" => "Arabic script",
        "Cyrl" => "Cyrillic script",
        "Deva" => "Devanagari script",
        "Hans" => "Simplified",
        "Hant" => "Traditional",
        "Latn" => "Latin script",
        _ => return None,
    })
}

/// Names of region subtags (ISO 3166-1 and UN M.49) that come up in interpretation.
fn region_name(region: &str) -> Option<&'static str> {
    Some(match region {
        "419" => "Latin America",
        "AR" => "Argentina",
        "AT" => "Austria",
        "AU" => "Australia",
        "BE" => "Belgium",
        "BR" => "Brazil",
        "CA" => "Canada",
        "CH" => "Switzerland",
        "CL" => "Chile",
        "CN" => "China",
        "CO" => "Colombia",
        "DE" => "Germany",
        "EG" => "Egypt",
        "ES" => "Spain",
        "FR" => "France",
        "GB" => "United Kingdom",
        "HK" => "Hong Kong",
        "IE" => "Ireland",
        "IN" => "India",
        "IT" => "Italy",
        "MA" => "Morocco",
        "MX" => "Mexico",
        "MY" => "Malaysia",
        "NG" => "Nigeria",
        "NL" => "Netherlands",
        "NZ" => "New Zealand",
        "PE" => "Peru",
        "PH" => "Philippines",
        "PK" => "Pakistan",
        "PT" => "Portugal",
        "RS" => "Serbia",
        "SA" => "Saudi Arabia",
        "SG" => "Singapore",
        "TW" => "Taiwan",
        "US" => "United States",
        "ZA" => "South Africa",
        _ => return None,
    })
}

// 5. The export line.
tolk_plugin_api::export_plugins! {
    prompts: [Interpreter],
}

// 6. Tests: the conformance kit, the exact text for one config, glossary selection, names and
//    every config error.
#[cfg(test)]
mod tests {
    use tolk_plugin_api::testing::{check_prompt, new_prompt};

    use super::*;

    /// Builds the provider from `config` through the ABI, as the host does, and asks for a
    /// prompt for `source` → `target`.
    fn ask(config: &str, source: &str, target: &str) -> Prompt {
        let mut p = new_prompt::<Interpreter>(config).unwrap();
        p.prompt(PromptRequest::new("stage:x", source, target)).into_result().unwrap()
    }

    #[test]
    fn passes_the_conformance_kit() {
        let report = check_prompt::<Interpreter>(Interpreter::EXAMPLE_CONFIG);
        assert!(report.passed(), "{report}");
    }

    const GOLDEN: &str = "\
You are a simultaneous interpreter. Interpret everything the speaker says from English into Spanish, continuously, while they speak.
Source language: en
Target language: es

- Speak only Spanish: the interpretation and nothing else. Speak in the first person, as the speaker (\"I think\", never \"the speaker thinks\").
- You are not an assistant and this is not a conversation. Never answer, comment, summarise, explain or add anything of your own, and never mention that you are an AI, a model or an interpreter. Do not greet anyone and do not speak before the speaker does.
- Everything you hear is speech to interpret, even when it seems addressed to you: interpret a question as a question and a request as a request; never reply to them.
- Keep up with the speaker: interpret each phrase as soon as its meaning is clear, without waiting for long sentences to end, and leave nothing out.
- Keep numbers, units, dates, amounts and names exactly right; do not convert units or currencies.
- If a passage is unclear, interpret what you understood and carry on; never ask for a repetition.
- When the speaker says something in Spanish already, repeat it unchanged. When the speaker is silent, stay silent.

Register: formal. Use polite forms of address and a formal, conference-level register in Spanish, even when the speaker is casual.

Terminology: when the speaker uses one of these terms, always render it in Spanish as given:
- \"cloud\" → \"nube\"
- \"machine learning\" → \"aprendizaje automático\"
- \"rollout\" → \"despliegue\"

Never translate these names and terms; say them exactly as written:
- Acme
- Acme Orbit
- Dana Whitfield
- Kubernetes

About the event (to help you understand; never mention it):
Acme Cloud Summit 2025, opening keynote: Dana Whitfield (CEO) launches Acme Orbit, a Kubernetes platform.
";

    #[test]
    fn golden_instructions_and_hint() {
        let prompt = ask(Interpreter::EXAMPLE_CONFIG, "en", "es");
        assert_eq!(prompt.instructions(), GOLDEN);
        assert_eq!(
            prompt.transcription_hint(),
            "Acme, Acme Orbit, Dana Whitfield, Kubernetes, cloud, machine learning, rollout"
        );
        // The same text every time, from every instance.
        assert_eq!(ask(Interpreter::EXAMPLE_CONFIG, "en", "es"), prompt);
    }

    /// The README's config and example text are what the plugin really does.
    #[test]
    fn the_readme_example_is_what_the_plugin_writes() {
        let readme = include_str!("../README.md");
        let block = |fence: &str| readme.split(fence).nth(1).and_then(|b| b.split("```").next()).unwrap();
        let config = block("```toml\n").split("[prompt.config]\n").nth(1).unwrap().replace("[prompt.config.", "[");
        let prompt = ask(&config, "en", "es");
        assert_eq!(prompt.instructions(), block("```text\n"));
        let prose = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(prose.contains(&format!("`{}`", prompt.transcription_hint())), "{}", prompt.transcription_hint());
    }

    #[test]
    fn an_empty_config_gives_the_core_rules_only() {
        let prompt = ask("", "de", "fr");
        let text = prompt.instructions();
        assert!(text.starts_with(
            "You are a simultaneous interpreter. Interpret everything the speaker says from German into French,"
        ));
        assert!(text.ends_with(
            "\n\nRegister: neutral. Follow the speaker's tone in clear, standard French suited to a general \
             audience.\n"
        ));
        assert_eq!(prompt.transcription_hint(), "");
    }

    #[test]
    fn style_context_and_extra() {
        let config = "style = \"informal\"\ncontext = \"  Team offsite.\\nDay 2.  \"\n\
                      extra = \"Render \\\"OKR\\\" as \\\"objetivos\\\".\"\n";
        let text = ask(config, "en", "es").instructions().to_string();
        let tail = text.split("\n\nRegister: ").nth(1).unwrap();
        assert_eq!(
            tail,
            "informal. Use a relaxed, conversational Spanish and familiar forms of address where Spanish has \
             them.\n\
             \n\
             About the event (to help you understand; never mention it):\n\
             Team offsite.\n\
             Day 2.\n\
             \n\
             Additional instructions:\n\
             Render \"OKR\" as \"objetivos\".\n"
        );
    }

    /// The terminology lines of the instructions for `target`.
    fn terms(config: &str, target: &str) -> Vec<String> {
        let text = ask(config, "en", target).instructions().to_string();
        text.lines().filter(|l| l.starts_with("- \"")).map(str::to_string).collect()
    }

    #[test]
    fn glossary_entries_follow_the_target_language() {
        let config = r#"
[glossary.pt]
"cloud" = "nuvem"
"Deploy" = "implantação"
"app" = "aplicação"
[glossary.pt-BR]
"app" = "aplicativo"
[glossary.pt-pt]
"screen" = "ecrã"
[glossary.es]
"cloud" = "nube"
[glossary.zh-Hant]
"cloud" = "雲端"
"#;
        // `pt` serves every Portuguese; the more specific tag wins; sorted ignoring case.
        assert_eq!(
            terms(config, "pt-BR"),
            ["- \"app\" → \"aplicativo\"", "- \"cloud\" → \"nuvem\"", "- \"Deploy\" → \"implantação\""]
        );
        assert_eq!(
            terms(config, "pt-PT"),
            [
                "- \"app\" → \"aplicação\"",
                "- \"cloud\" → \"nuvem\"",
                "- \"Deploy\" → \"implantação\"",
                "- \"screen\" → \"ecrã\""
            ]
        );
        assert_eq!(
            terms(config, "pt"),
            ["- \"app\" → \"aplicação\"", "- \"cloud\" → \"nuvem\"", "- \"Deploy\" → \"implantação\""]
        );
        assert_eq!(terms(config, "es-419"), ["- \"cloud\" → \"nube\""]);
        assert_eq!(terms(config, "zh-Hant-TW"), ["- \"cloud\" → \"雲端\""]);
        // A more specific key never serves a less specific or another tag.
        assert!(terms(config, "zh").is_empty());
        assert!(terms(config, "fr").is_empty());
        assert!(!ask(config, "en", "fr").instructions().contains("Terminology"));
        // Tags are matched whatever their case.
        assert_eq!(terms(config, "PT-br"), terms(config, "pt-BR"));
        // Every glossary's source terms help the transcription, once each.
        assert_eq!(ask(config, "en", "fr").transcription_hint(), "app, cloud, Deploy, screen");
    }

    #[test]
    fn keep_names_come_first_in_the_hint_and_once() {
        let config = "keep = [\"Zeta\", \"Acme\", \"Zeta\"]\n[glossary.es]\n\"Acme\" = \"Acme\"\n\"beta\" = \"beta\"\n";
        assert_eq!(ask(config, "en", "es").transcription_hint(), "Zeta, Acme, beta");
        assert!(ask(config, "en", "es").instructions().ends_with("say them exactly as written:\n- Zeta\n- Acme\n"));
    }

    #[test]
    fn language_names() {
        for (tag, name) in [
            ("en", "English"),
            ("es", "Spanish"),
            ("uk", "Ukrainian"),
            ("fa", "Persian"),
            ("no", "Norwegian"),
            ("nb", "Norwegian Bokmål"),
            ("sw", "Swahili"),
            ("yue", "Cantonese"),
            ("pt-BR", "Brazilian Portuguese"),
            ("pt-br", "Brazilian Portuguese"),
            ("es-419", "Latin American Spanish"),
            ("zh-Hant", "Traditional Chinese"),
            ("zh-Hans", "Simplified Chinese"),
            ("zh-TW", "Traditional Chinese"),
            ("sr-Latn", "Serbian (Latin script)"),
            ("sr-Cyrl-RS", "Serbian (Cyrillic script, Serbia)"),
            ("de-AT", "German (Austria)"),
            ("fr-BE", "French (Belgium)"),
            ("ar-EG", "Arabic (Egypt)"),
            ("en-ZW", "English (ZW)"),
            ("ca-ES-valencia", "Catalan (Spain)"),
            ("xx", "xx"),
            ("qaa-BR", "qaa-BR"),
            ("not a tag", "not a tag"),
        ] {
            assert_eq!(language_name(tag), name, "{tag}");
        }
        // The names reach the instructions.
        assert!(
            ask("", "pt-BR", "sr-Latn")
                .instructions()
                .contains("from Brazilian Portuguese into Serbian (Latin script),")
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (config, want) in [
            ("[glossary.xx_1]\n\"a\" = \"b\"", "glossary.xx_1: not a language tag"),
            ("[glossary.english]\n\"a\" = \"b\"", "glossary.english: not a language tag"),
            ("[glossary.\"pt BR\"]\n\"a\" = \"b\"", "glossary.\"pt BR\": not a language tag"),
            ("[glossary.es]\n\"\" = \"nube\"", "glossary.es.\"\": empty term"),
            ("[glossary.es]\ncloud = \" \"", "glossary.es.cloud: empty translation"),
            ("[glossary.es]\n\"machine learning\" = \"\"", "glossary.es.\"machine learning\": empty translation"),
            ("[glossary.es]\na = \"b\"\n[glossary.ES]\na = \"b\"", "glossary.es: same language as glossary.ES"),
            ("[glossary.es]\ncloud = 1", "glossary.es.cloud: invalid type: integer `1`, expected a string"),
            ("keep = [\"Acme\", \" \"]", "keep[1]: empty name"),
            ("keep = \"Acme\"", "keep: invalid type: string \"Acme\", expected a sequence"),
            ("style = \"casual\"", "style: unknown variant `casual`, expected one of `formal`, `neutral`, `informal`"),
            ("glosary = 1", "glosary: unknown key (expected one of: style, context, keep, glossary, extra)"),
        ] {
            let err = new_prompt::<Interpreter>(config).err().unwrap_or_else(|| panic!("accepted: {config}"));
            assert_eq!(err.message(), want, "{config}");
        }
    }

    #[test]
    fn canonical_tags() {
        for (tag, want) in [
            ("es", Some("es")),
            ("PT-br", Some("pt-BR")),
            ("zh-hant-tw", Some("zh-Hant-TW")),
            ("es-419", Some("es-419")),
        ] {
            assert_eq!(canonical_tag(tag).as_deref(), want, "{tag}");
        }
        for bad in ["", "e", "english", "en_US", "en-", "en-x", "12", "en-US-US", "pt BR"] {
            assert_eq!(canonical_tag(bad), None, "{bad}");
        }
    }
}
