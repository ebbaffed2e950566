//! Turning a plugin's config table (TOML text handed over by the host) into its typed
//! `Config`, with errors that name the key.

use serde::de::DeserializeOwned;

use crate::PluginError;

/// Parses the body of a plugin's config table into `C`.
///
/// Errors are `config` errors whose message starts with the offending key path, e.g.
/// `frequency_hz: invalid type: string "x", expected f32` or
/// `freq: unknown key (expected one of: frequency_hz, amplitude)`. The host prefixes the file
/// and table, so the user reads `configs/x.toml: source[0].config.freq: unknown key …`.
///
/// The export macro calls this for you; it is public so plugin tests can check their configs.
pub fn parse_config<C: DeserializeOwned>(text: &str) -> Result<C, PluginError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        PluginError::config(match line {
            Some(line) => format!("invalid TOML at line {line}: {}", e.message().trim()),
            None => format!("invalid TOML: {}", e.message().trim()),
        })
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        PluginError::config(describe(&path, e.inner().message()))
    })
}

/// One line `key.path: what is wrong` from a serde error at `path`, turning serde's unknown-field wording into one that
/// names the key itself.
pub fn describe(path: &str, message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let full = join_key(path, key);
        let expected = expected.trim_start_matches(", ");
        let expected = if let Some(list) = expected.strip_prefix("expected one of ") {
            format!(" (expected one of: {})", list.replace('`', ""))
        } else if let Some(one) = expected.strip_prefix("expected ") {
            format!(" (expected {})", one.replace('`', ""))
        } else {
            " (this table takes no keys)".to_string()
        };
        return format!("{full}: unknown key{expected}");
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        return format!("{}: missing required key", join_key(path, key));
    }
    let mut message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    // toml's own errors end with ` in `key``, which the path already says.
    if let Some(i) = message.rfind(" in `")
        && message.ends_with('`')
    {
        message.truncate(i);
    }
    if path.is_empty() { message } else { format!("{path}: {message}") }
}

/// `path.key`, unless serde_path_to_error already ended the path with the key.
fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else if path == key || path.ends_with(&format!(".{key}")) {
        path.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Tone {
        frequency_hz: f32,
        #[serde(default)]
        amplitude: f32,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        level: u8,
    }

    #[test]
    fn good_config_parses() {
        let t: Tone = parse_config("frequency_hz = 440.0\namplitude = 0.5").unwrap();
        assert_eq!(t.frequency_hz, 440.0);
        assert_eq!(t.amplitude, 0.5);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse_config::<Tone>("frequency_hz = 1.0\nfreq = 2").unwrap_err();
        assert_eq!(e.message(), "freq: unknown key (expected one of: frequency_hz, amplitude, inner)");
        let e = parse_config::<Tone>("frequency_hz = \"x\"").unwrap_err();
        assert_eq!(e.message(), "frequency_hz: invalid type: string \"x\", expected f32");
        let e = parse_config::<Tone>("amplitude = 1.0").unwrap_err();
        assert_eq!(e.message(), "frequency_hz: missing required key");
        let e = parse_config::<Tone>("frequency_hz = 1.0\n[inner]\nlevel = 300").unwrap_err();
        assert!(e.message().starts_with("inner.level: "), "{}", e.message());
        let e = parse_config::<Tone>("frequency_hz = 1.0\n[inner]\nlvl = 3").unwrap_err();
        assert_eq!(e.message(), "inner.lvl: unknown key (expected level)");
        let e = parse_config::<Tone>("frequency_hz = = 1").unwrap_err();
        assert!(e.message().starts_with("invalid TOML at line 1"), "{}", e.message());
        assert!(!e.message().contains('\n'));
    }
}
