//! Language tags: the one parser every part of tolk uses (the config validator, the Realtime
//! client's transcription hint, `tolk serve`'s checks, and plugins such as the prompt
//! interpreter).
//!
//! The subset of BCP-47 interpretation needs: a 2–3 letter language, then optionally a 4-letter
//! script, a 2-letter or 3-digit region, and 5–8 character variants, in that order (`en`,
//! `es-419`, `pt-BR`, `zh-Hant`, `sr-Latn-RS`). Tags are case-insensitive; [`canonical`] gives
//! the canonical case. It lives here, in the crate plugins already depend on, so that a plugin
//! reads a tag exactly as the host that routes to it does.

/// Checks a tag and returns it in canonical case (`pt-br` → `pt-BR`, `zh-hant` → `zh-Hant`), or
/// says in one line what is wrong with it.
pub fn canonical(tag: &str) -> Result<String, String> {
    if tag.contains('_') {
        return Err(format!("\"{tag}\" is not a language tag (BCP-47 uses '-': \"{}\")", tag.replace('_', "-")));
    }
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or("");
    if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "\"{tag}\" is not a language tag (expected a 2- or 3-letter code such as \"en\", \"es\", \"pt-BR\")"
        ));
    }
    let mut out = primary.to_ascii_lowercase();
    let mut stage = 0; // 0: script or region next, 1: region next, 2: variants only
    for part in parts {
        let alpha = part.chars().all(|c| c.is_ascii_alphabetic());
        let digits = part.chars().all(|c| c.is_ascii_digit());
        out.push('-');
        if stage == 0 && part.len() == 4 && alpha {
            let mut c = part.chars();
            out.extend(c.next().map(|f| f.to_ascii_uppercase()));
            out.push_str(&c.as_str().to_ascii_lowercase());
            stage = 1;
        } else if stage <= 1 && ((part.len() == 2 && alpha) || (part.len() == 3 && digits)) {
            out.push_str(&part.to_ascii_uppercase());
            stage = 2;
        } else if (5..=8).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric()) {
            out.push_str(&part.to_ascii_lowercase());
            stage = 2;
        } else {
            return Err(format!("\"{tag}\" is not a language tag (bad subtag \"{part}\")"));
        }
    }
    Ok(out)
}

/// True when `tag` is a language tag [`canonical`] accepts (in any case).
pub fn is_tag(tag: &str) -> bool {
    canonical(tag).is_ok()
}

/// The primary language subtag (`pt` of `pt-BR`), as written.
pub fn primary(tag: &str) -> &str {
    tag.split('-').next().unwrap_or(tag)
}

/// The ISO 639-1 code of a tag (`pt-BR` → `pt`, `EN` → `en`), when it is a valid tag whose
/// language has a two-letter code; `None` for three-letter languages (`yue`) and non-tags.
/// This is the form the Realtime API's transcription `language` hint takes.
pub fn iso639_1(tag: &str) -> Option<String> {
    let tag = canonical(tag).ok()?;
    let p = primary(&tag);
    (p.len() == 2).then(|| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for (input, want) in [
            ("en", "en"),
            ("EN", "en"),
            ("pt-br", "pt-BR"),
            ("PT-br", "pt-BR"),
            ("es-419", "es-419"),
            ("zh-hant", "zh-Hant"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("sr-latn-rs", "sr-Latn-RS"),
            ("ca-valencia", "ca-valencia"),
            ("yue", "yue"),
        ] {
            assert_eq!(canonical(input).unwrap(), want, "{input}");
            assert!(is_tag(input), "{input}");
        }
        for bad in ["", "e", "english", "en_US", "en-", "en-x", "12", "en-US-US", "pt BR", "German!"] {
            assert!(canonical(bad).is_err(), "{bad}");
            assert!(!is_tag(bad), "{bad}");
        }
        assert_eq!(canonical("en_US").unwrap_err(), "\"en_US\" is not a language tag (BCP-47 uses '-': \"en-US\")");
        assert_eq!(canonical("en-x").unwrap_err(), "\"en-x\" is not a language tag (bad subtag \"x\")");
    }

    #[test]
    fn iso_639_1_hint() {
        assert_eq!(iso639_1("pt-BR").as_deref(), Some("pt"));
        assert_eq!(iso639_1("EN").as_deref(), Some("en"));
        assert_eq!(iso639_1("yue"), None);
        assert_eq!(iso639_1("en_US"), None, "not a tag, no hint");
        assert_eq!(primary("sr-Latn-RS"), "sr");
    }
}
