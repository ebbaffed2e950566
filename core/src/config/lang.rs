//! Language tags (BCP-47, the subset interpretation needs): `en`, `es-419`, `pt-BR`, `zh-Hant`,
//! `sr-Latn-RS`. Tags are case-insensitive; they are stored in canonical case.

/// Checks a tag and returns it in canonical case (`pt-br` → `pt-BR`), or says what is wrong.
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

/// The primary language subtag (`pt` of `pt-BR`).
pub fn primary(tag: &str) -> &str {
    tag.split('-').next().unwrap_or(tag)
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
            ("es-419", "es-419"),
            ("zh-hant", "zh-Hant"),
            ("sr-latn-rs", "sr-Latn-RS"),
            ("yue", "yue"),
        ] {
            assert_eq!(canonical(input).unwrap(), want);
        }
        for bad in ["", "e", "english", "en_US", "en-", "en-x", "12", "en-US-US"] {
            assert!(canonical(bad).is_err(), "{bad}");
        }
        assert_eq!(canonical("en_US").unwrap_err(), "\"en_US\" is not a language tag (BCP-47 uses '-': \"en-US\")");
    }
}
