//! Parse, then validate: raw TOML → [`Config`], collecting every error; then
//! [`check_plugins`] against the loaded plugins (ids exist, each plugin accepts its table).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::{Debug, Display},
    ops::RangeInclusive,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;
use tolk_plugin_api::{ErrorKind, PluginError, PluginKind};

use super::{
    Config, ConfigError, Engine, FailurePolicy, PluginSpec, Provider, RouteSpec, SourceSpec, dir_of, lang, outputs,
    raw::{PathList, RawEngine, RawPlugin, RawPlugins, RawRoute, RawSource},
};
use crate::{
    plugin_host::{HostServices, Registry},
    util::did_you_mean,
    vocab,
};

const SECTIONS: &[&str] = &["engine", "plugins", "source", "prompt", "route", "sink", "run", "listen"];

struct Ctx {
    file: String,
    errors: Vec<ConfigError>,
    /// `(section, id)` of entries that were rejected: references to them are not reported again
    /// as dangling, so one mistake gives one line.
    rejected: BTreeSet<(&'static str, String)>,
}

impl Ctx {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { file: self.file.clone(), key: key.into(), message: message.into() });
    }

    /// Deserializes `value` into `T`, recording an error at `key` on failure.
    fn de<T: DeserializeOwned>(&mut self, key: &str, value: toml::Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let full = if path.is_empty() || path == "." { key.to_string() } else { format!("{key}.{path}") };
                let line = tolk_plugin_api::config::describe(&full, &e.inner().to_string());
                match line.split_once(": ") {
                    Some((k, m)) => self.err(k, m),
                    None => self.err(key, line),
                }
                None
            }
        }
    }
}

/// Reads and validates the config file at `path`. Returns the config built from every part
/// that was valid, and every error found; the config is usable only when the list is empty.
pub fn parse(path: &Path) -> (Config, Vec<ConfigError>) {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, &file, &dir_of(path)),
        Err(e) => {
            let errors =
                vec![ConfigError { file: file.clone(), key: String::new(), message: format!("cannot read: {e}") }];
            (empty(file, dir_of(path)), errors)
        }
    }
}

fn empty(file: String, dir: PathBuf) -> Config {
    Config {
        file,
        dir,
        engine: Engine::default(),
        plugin_dirs: vec![],
        sources: vec![],
        prompts: vec![],
        sinks: vec![],
        routes: vec![],
        run: super::run::RunSettings::defaults("gpt-realtime"),
        listen: None,
        warnings: vec![],
    }
}

/// [`parse`] on text already read; `file` names it in messages, `dir` anchors relative paths.
pub fn parse_str(text: &str, file: &str, dir: &Path) -> (Config, Vec<ConfigError>) {
    let mut cx = Ctx { file: file.to_string(), errors: vec![], rejected: BTreeSet::new() };
    let mut config = empty(file.to_string(), dir.to_path_buf());
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            let e: toml::de::Error = e;
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1);
            cx.err("", format!("invalid TOML at line {line}: {}", e.message().trim()));
            return (config, cx.errors);
        }
    };
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            cx.err(
                key.as_str(),
                format!("unknown section{} (expected one of: {})", did_you_mean(key, SECTIONS), SECTIONS.join(", ")),
            );
        }
    }
    let mut table = table;
    config.engine = engine(&mut cx, table.remove("engine"));
    if let Some(v) = table.remove("plugins")
        && let Some(p) = cx.de::<RawPlugins>("plugins", v)
    {
        let list = match p.path {
            PathList::One(s) => vec![s],
            PathList::Many(v) => v,
        };
        for (i, d) in list.iter().enumerate() {
            let resolved = if Path::new(d).is_absolute() { PathBuf::from(d) } else { dir.join(d) };
            if !resolved.is_dir() {
                cx.err(format!("plugins.path[{i}]"), format!("directory {} does not exist", resolved.display()));
            } else {
                config.plugin_dirs.push(resolved);
            }
        }
    }
    let sources: Vec<(String, RawSource)> = array(&mut cx, &mut table, "source");
    let prompts: Vec<(String, RawPlugin)> = array(&mut cx, &mut table, "prompt");
    let sinks: Vec<(String, RawPlugin)> = array(&mut cx, &mut table, "sink");
    let routes: Vec<(String, RawRoute)> = array(&mut cx, &mut table, "route");
    let raw_run = table.remove("run").and_then(|v| cx.de::<super::run::RawRun>("run", v)).unwrap_or_default();
    config.run = super::run::validate(raw_run, &config.engine.model, &mut |k, m| cx.err(k, m));
    let raw_listen = table.remove("listen").map(|v| cx.de::<super::listen::RawListen>("listen", v));

    let mut ids = BTreeMap::new();
    for (key, s) in sources {
        let ok_id = check_id(&mut cx, &key, &s.id, &mut ids, "source");
        check_plugin_field(&mut cx, &key, &s.plugin);
        let language = match lang::canonical(&s.language) {
            Ok(l) => l,
            Err(e) => {
                cx.err(format!("{key}.language"), e);
                cx.rejected.insert(("source", s.id));
                continue;
            }
        };
        if ok_id {
            let config_text = toml::to_string(&s.config).unwrap_or_default();
            config.sources.push(SourceSpec { id: s.id, plugin: s.plugin, language, config: config_text, key });
        }
    }
    for (list, kind, out) in [(prompts, "prompt", &mut config.prompts), (sinks, "sink", &mut config.sinks)] {
        let mut ids = BTreeMap::new();
        for (key, p) in list {
            let ok_id = check_id(&mut cx, &key, &p.id, &mut ids, kind);
            check_plugin_field(&mut cx, &key, &p.plugin);
            if ok_id {
                out.push(PluginSpec { id: p.id, plugin: p.plugin, config: p.config, key });
            }
        }
    }
    let mut routed: BTreeMap<(String, String), String> = BTreeMap::new();
    for (key, r) in routes {
        if let Some(route) = route(&mut cx, &config, &key, r, &mut routed) {
            config.routes.push(route);
        }
    }
    relays(&mut cx, &config, &routed);
    gates(&mut cx, &config);
    #[cfg(feature = "offline")]
    offline_languages(&mut cx, &config);
    // `[listen]` names route languages: checked once the routes are known.
    if let Some(Some(raw)) = raw_listen {
        config.listen = Some(super::listen::validate(raw, &config.routes, dir, &mut |k, m| cx.err(k, m)));
    }
    // Allowed, but probably not what the user meant; not worth saying while there are errors
    // (a rejected route leaves its sinks looking unused).
    if !cx.errors.is_empty() {
        return (config, cx.errors);
    }
    if config.routes.is_empty() {
        config.warnings.push(format!("{file}: no [[route]]: nothing will be interpreted"));
    }
    if config.listen.is_some() && config.run.delivery == super::run::Delivery::Lossless {
        config.warnings.push(format!(
            "{file}: listen: run.delivery is \"lossless\" (sources read faster than real time): listeners hear \
             the routes at real time and lose what runs more than 30 s ahead"
        ));
    }
    for s in &config.sources {
        if !config.routes.iter().any(|r| r.source == s.id) {
            config.warnings.push(format!("{file}: {}: source \"{}\" is not used by any route", s.key, s.id));
        }
    }
    for s in &config.sinks {
        if !config.routes.iter().any(|r| r.sinks.contains(&s.id)) {
            config.warnings.push(format!("{file}: {}: sink \"{}\" is not used by any route", s.key, s.id));
        }
    }
    for p in &config.prompts {
        if !config.routes.iter().any(|r| r.prompt.as_deref() == Some(p.id.as_str())) {
            config.warnings.push(format!("{file}: {}: prompt \"{}\" is not used by any route", p.key, p.id));
        }
    }
    (config, cx.errors)
}

fn engine(cx: &mut Ctx, value: Option<toml::Value>) -> Engine {
    let mut e = Engine { model: String::new(), ..Engine::default() };
    let raw = match value {
        None => RawEngine::default(),
        Some(v) => {
            // A key in the file is refused with a message of its own, not as an unknown key.
            let secrets: Vec<&str> = ["api_key", "key", "token"]
                .into_iter()
                .filter(|k| v.as_table().is_some_and(|t| t.contains_key(*k)))
                .collect();
            for secret in &secrets {
                cx.err(
                    format!("engine.{secret}"),
                    "API keys do not belong in config files: put the key in an environment variable and name it with api_key_env",
                );
            }
            if !secrets.is_empty() {
                return e;
            }
            cx.de::<RawEngine>("engine", v).unwrap_or_default()
        }
    };
    e.provider = match raw.provider.as_deref().unwrap_or("local") {
        "local" => Provider::Local,
        "openai" => Provider::OpenAi,
        "openai-translate" => Provider::OpenAiTranslate,
        "azure" => Provider::Azure,
        other => {
            let known = ["local", "openai", "openai-translate", "azure"];
            cx.err(
                "engine.provider",
                format!(
                    "unknown provider \"{other}\"{} (expected one of: {})",
                    did_you_mean(other, known),
                    known.join(", ")
                ),
            );
            Provider::Local
        }
    };
    match (raw.engine.as_deref(), e.provider) {
        (None, _) => {}
        (Some(name), Provider::Local) => match name {
            "test" => {}
            "offline" if cfg!(feature = "offline") => e.local_engine = name.into(),
            "offline" => cx.err(
                "engine.engine",
                "\"offline\": this tolk was built without the offline engine (build with `--features tolk-core/offline`)",
            ),
            other => cx.err("engine.engine", format!("unknown engine \"{other}\" (expected one of: test, offline)")),
        },
        (Some(_), p) => {
            cx.err("engine.engine", format!("only for provider \"local\" (this is provider \"{}\")", p.as_str()))
        }
    }
    e.model = match (raw.model.clone(), e.provider) {
        (Some(m), _) if m.trim().is_empty() => {
            cx.err("engine.model", "must not be empty");
            String::new()
        }
        (Some(m), _) => m,
        (None, Provider::Azure) => {
            cx.err("engine.model", "provider \"azure\" needs the deployment name as model");
            String::new()
        }
        (None, Provider::OpenAiTranslate) => "gpt-realtime-translate".into(),
        (None, _) => "gpt-realtime".into(),
    };
    if let Some(url) = &raw.url
        && !["ws://", "wss://"].iter().any(|p| url.starts_with(p))
    {
        cx.err("engine.url", format!("\"{url}\" is not a WebSocket URL (ws:// or wss://)"));
    }
    if let Some(ep) = &raw.endpoint
        && !ep.starts_with("https://")
        && !ep.starts_with("http://")
    {
        cx.err("engine.endpoint", format!("\"{ep}\" is not an https:// URL"));
    }
    if let Some(var) = &raw.api_key_env
        && (var.is_empty()
            || var.starts_with(|c: char| c.is_ascii_digit())
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        cx.err("engine.api_key_env", format!("\"{var}\" is not an environment variable name"));
    }
    e.url = raw.url.clone();
    e.endpoint = raw.endpoint.clone();
    e.api_key_env = raw.api_key_env.clone();
    engine_session(cx, &mut e, raw);
    e
}

/// One of `known`, or an error at `key` with a suggestion.
/// Reports `value` outside `range` (the protocol's range, from [`vocab`]) under `key`.
fn in_range<T: PartialOrd + Display + Debug>(cx: &mut Ctx, key: &str, value: T, range: RangeInclusive<T>) {
    if !range.contains(&value) {
        cx.err(key, format!("{value} is out of range ({:?} to {:?})", range.start(), range.end()));
    }
}

fn one_of(cx: &mut Ctx, key: &str, value: &str, known: &[&str]) -> bool {
    if known.contains(&value) {
        return true;
    }
    cx.err(
        key,
        format!(
            "unknown value \"{value}\"{} (expected one of: {})",
            did_you_mean(value, known.iter().copied()),
            known.join(", ")
        ),
    );
    false
}

/// Validates protocol, mode, transcription, turn detection and output knobs of `[engine]`.
fn engine_session(cx: &mut Ctx, e: &mut Engine, r: RawEngine) {
    use super::{Mode, Protocol, TurnDetection};
    let translate = e.provider == Provider::OpenAiTranslate;
    e.protocol = match r.protocol.as_deref() {
        None if translate => Protocol::Translation,
        None => Protocol::Ga,
        Some(p) if !one_of(cx, "engine.protocol", p, &["ga", "legacy", "translation"]) => Protocol::Ga,
        Some("ga") => Protocol::Ga,
        Some("legacy") => Protocol::Legacy,
        Some(_) => Protocol::Translation,
    };
    if translate && e.protocol != Protocol::Translation {
        cx.err(
            "engine.protocol",
            format!(
                "provider \"openai-translate\" speaks only the translation protocol, not \"{}\"",
                e.protocol.as_str()
            ),
        );
    }
    if e.provider == Provider::Azure && e.protocol == Protocol::Translation {
        cx.err("engine.protocol", "provider \"azure\" does not offer the translation protocol");
    }
    if let Some(v) = r.api_version {
        if e.provider != Provider::Azure || e.protocol != Protocol::Legacy {
            cx.err("engine.api_version", "only used by provider \"azure\" with protocol \"legacy\"");
        } else if v.trim().is_empty() {
            cx.err("engine.api_version", "must not be empty");
        } else {
            e.api_version = v;
        }
    }
    if let Some(m) = r.mode.as_deref()
        && one_of(cx, "engine.mode", m, &["interpret", "conversation"])
    {
        e.mode = if m == "conversation" { Mode::Conversation } else { Mode::Interpret };
    }
    if e.protocol == Protocol::Translation && e.mode == Mode::Conversation {
        cx.err("engine.mode", "the translation protocol has no turns, so no conversation mode");
    }
    let default_model = match e.protocol {
        Protocol::Legacy => "whisper-1",
        Protocol::Translation => "gpt-realtime-whisper",
        Protocol::Ga => super::DEFAULT_TRANSCRIPTION_MODEL,
    };
    e.transcription_model = match (r.transcription.unwrap_or(true), r.transcription_model) {
        (_, Some(m)) if m.trim().is_empty() => {
            cx.err("engine.transcription_model", "must not be empty (set transcription = false to turn it off)");
            None
        }
        (false, Some(_)) => {
            cx.err("engine.transcription_model", "given while transcription = false");
            None
        }
        (false, None) => None,
        (true, Some(m)) => Some(m),
        (true, None) => Some(default_model.into()),
    };
    let kind = r.turn_detection.as_deref().unwrap_or("server_vad");
    let kind = if one_of(cx, "engine.turn_detection", kind, &["server_vad", "semantic_vad", "none"]) {
        kind
    } else {
        "server_vad"
    };
    let interrupt = r.interrupt_response.unwrap_or(e.mode == Mode::Conversation);
    let create = r.create_response.unwrap_or(true);
    let vad_only = [
        ("vad_threshold", r.vad_threshold.is_some()),
        ("prefix_padding_ms", r.prefix_padding_ms.is_some()),
        ("silence_duration_ms", r.silence_duration_ms.is_some()),
        ("idle_timeout_ms", r.idle_timeout_ms.is_some()),
    ];
    let any_vad = [r.create_response.is_some(), r.interrupt_response.is_some(), r.eagerness.is_some()];
    if e.protocol == Protocol::Translation {
        for (k, set) in vad_only.iter().chain(&[
            ("turn_detection", r.turn_detection.is_some()),
            ("eagerness", any_vad[2]),
            ("create_response", any_vad[0]),
            ("interrupt_response", any_vad[1]),
        ]) {
            if *set {
                cx.err(format!("engine.{k}"), "the translation protocol has no turn detection");
            }
        }
    }
    e.turn_detection = match kind {
        "none" => {
            for (k, set) in vad_only.iter().chain(&[
                ("eagerness", any_vad[2]),
                ("create_response", any_vad[0]),
                ("interrupt_response", any_vad[1]),
            ]) {
                if *set && e.protocol != Protocol::Translation {
                    cx.err(format!("engine.{k}"), "given while turn_detection = \"none\"");
                }
            }
            TurnDetection::None
        }
        "semantic_vad" => {
            for (k, set) in vad_only {
                if set {
                    cx.err(format!("engine.{k}"), "only for turn_detection = \"server_vad\"");
                }
            }
            if e.protocol == Protocol::Legacy {
                cx.err("engine.turn_detection", "semantic_vad is not part of the legacy protocol");
            }
            let eagerness = r.eagerness.unwrap_or_else(|| "auto".into());
            one_of(cx, "engine.eagerness", &eagerness, vocab::EAGERNESS);
            TurnDetection::SemanticVad { eagerness, create_response: create, interrupt_response: interrupt }
        }
        _ => {
            if r.eagerness.is_some() {
                cx.err("engine.eagerness", "only for turn_detection = \"semantic_vad\"");
            }
            let threshold = r.vad_threshold.unwrap_or(0.5);
            in_range(cx, "engine.vad_threshold", threshold, vocab::VAD_THRESHOLD);
            for (key, value, range) in [
                ("engine.prefix_padding_ms", r.prefix_padding_ms, vocab::PREFIX_PADDING_MS),
                ("engine.silence_duration_ms", r.silence_duration_ms, vocab::SILENCE_DURATION_MS),
                ("engine.idle_timeout_ms", r.idle_timeout_ms, vocab::IDLE_TIMEOUT_MS),
            ] {
                if let Some(ms) = value {
                    in_range(cx, key, ms, range);
                }
            }
            if r.idle_timeout_ms.is_some() && e.protocol == Protocol::Legacy {
                cx.err("engine.idle_timeout_ms", "not part of the legacy protocol");
            }
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms: r.prefix_padding_ms.unwrap_or(300),
                silence_duration_ms: r.silence_duration_ms.unwrap_or(500),
                idle_timeout_ms: r.idle_timeout_ms,
                create_response: create,
                interrupt_response: interrupt,
            }
        }
    };
    if let Some(n) = r.noise_reduction
        && one_of(cx, "engine.noise_reduction", &n, vocab::NOISE_REDUCTION)
    {
        e.noise_reduction = Some(n);
    }
    if let Some(t) = r.max_output_tokens {
        in_range(cx, "engine.max_output_tokens", t, vocab::MAX_OUTPUT_TOKENS);
        if e.protocol == Protocol::Translation {
            cx.err("engine.max_output_tokens", "the translation protocol has no responses to cap");
        }
        e.max_output_tokens = Some(t);
    }
    if let Some(s) = r.speed {
        in_range(cx, "engine.speed", s, vocab::SPEED);
        if e.protocol != Protocol::Ga {
            cx.err("engine.speed", format!("not part of the {} protocol", e.protocol.as_str()));
        }
        e.speed = Some(s);
    }
    if let Some(ms) = r.connect_timeout_ms {
        if ms == 0 {
            cx.err("engine.connect_timeout_ms", "must be more than 0");
        } else {
            e.connect_timeout_ms = ms;
        }
    }
    if let Some(ms) = r.event_timeout_ms {
        if (100..=600_000).contains(&ms) {
            e.event_timeout_ms = ms;
        } else {
            cx.err("engine.event_timeout_ms", format!("{ms} is outside 100..=600000"));
        }
    }
    if let Some(ms) = r.ping_interval_ms {
        if ms == 0 || (100..=600_000).contains(&ms) {
            e.ping_interval_ms = ms;
        } else {
            cx.err("engine.ping_interval_ms", format!("{ms} is outside 100..=600000 (0 = never ping)"));
        }
    }
}

/// Deserializes `[[name]]` element by element, so one bad element does not hide the others.
fn array<T: DeserializeOwned>(cx: &mut Ctx, table: &mut toml::Table, name: &'static str) -> Vec<(String, T)> {
    match table.remove(name) {
        None => vec![],
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let key = format!("{name}[{i}]");
                if !v.is_table() {
                    cx.err(&key, format!("expected a table ([[{name}]])"));
                    return None;
                }
                let id = v.get("id").and_then(toml::Value::as_str).map(str::to_string);
                let parsed = cx.de::<T>(&key, v).map(|t| (key, t));
                if parsed.is_none()
                    && let Some(id) = id
                {
                    cx.rejected.insert((name, id));
                }
                parsed
            })
            .collect(),
        Some(_) => {
            cx.err(name, format!("expected an array of tables: write [[{name}]], not [{name}]"));
            vec![]
        }
    }
}

fn check_id(cx: &mut Ctx, key: &str, id: &str, seen: &mut BTreeMap<String, String>, _kind: &str) -> bool {
    if id.is_empty()
        || id.len() > 64
        || !id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        cx.err(
            format!("{key}.id"),
            format!(
                "\"{id}\" is not a valid id (lower-case letters, digits, '-' and '_', starting with a letter or digit)"
            ),
        );
        return false;
    }
    if let Some(first) = seen.get(id) {
        cx.err(format!("{key}.id"), format!("duplicate id \"{id}\" (also used by {first})"));
        return false;
    }
    seen.insert(id.to_string(), key.to_string());
    true
}

fn check_plugin_field(cx: &mut Ctx, key: &str, plugin: &str) {
    if plugin.trim().is_empty() {
        cx.err(format!("{key}.plugin"), "must not be empty");
    }
}

/// Checks every route's `gate_while`: each entry names a sink, or a route as `source:lang`.
fn gates(cx: &mut Ctx, config: &Config) {
    for r in &config.routes {
        let mut seen: Vec<&str> = vec![];
        for (i, g) in r.gate_while.iter().enumerate() {
            let key = format!("{}.gate_while[{i}]", r.key);
            if seen.contains(&g.as_str()) {
                cx.err(key, format!("\"{g}\" is listed twice"));
                continue;
            }
            seen.push(g);
            let is_sink = config.sinks.iter().any(|s| &s.id == g);
            let is_route = g.split_once(':').is_some_and(|(src, lang)| {
                config.routes.iter().any(|x| x.source == src && x.to.iter().any(|t| t == lang && t != super::FLOOR))
            });
            if !is_sink && !is_route {
                let routes = config
                    .routes
                    .iter()
                    .flat_map(|x| x.to.iter().filter(|t| *t != super::FLOOR).map(move |t| format!("{}:{t}", x.source)));
                let known: Vec<String> = config.sinks.iter().map(|s| s.id.clone()).chain(routes).collect();
                cx.err(
                    key,
                    format!(
                        "no sink or translated route with id \"{g}\"{}",
                        did_you_mean(g, known.iter().map(String::as_str))
                    ),
                );
            }
        }
    }
}

fn route(
    cx: &mut Ctx,
    config: &Config,
    key: &str,
    r: RawRoute,
    routed: &mut BTreeMap<(String, String), String>,
) -> Option<RouteSpec> {
    let before = cx.errors.len();
    // A reference to an entry already reported as invalid fails the route without a line.
    let mut quiet_failure = false;
    let source = config.source(&r.source);
    if source.is_none() && cx.rejected.contains(&("source", r.source.clone())) {
        quiet_failure = true;
    } else if source.is_none() {
        cx.err(
            format!("{key}.source"),
            format!(
                "no source with id \"{}\"{}",
                r.source,
                did_you_mean(&r.source, config.sources.iter().map(|s| s.id.as_str()))
            ),
        );
    }
    if r.to.is_empty() {
        cx.err(format!("{key}.to"), "lists no target language");
    }
    // A relay route takes another route's translation (source → via) as its input.
    let via = match r.via.as_deref().map(lang::canonical) {
        None => None,
        Some(Ok(l)) if source.is_some_and(|s| s.language == l) => {
            cx.err(format!("{key}.via"), format!("\"{l}\" is the source's own language: route the source directly"));
            None
        }
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            cx.err(format!("{key}.via"), e);
            None
        }
    };
    let mut to = Vec::new();
    for (i, t) in r.to.iter().enumerate() {
        // The floor (the original, untranslated) is a channel like a language.
        let parsed =
            if t.eq_ignore_ascii_case(super::FLOOR) { Ok(super::FLOOR.to_string()) } else { lang::canonical(t) };
        match parsed {
            Ok(l) if to.contains(&l) => cx.err(format!("{key}.to[{i}]"), format!("\"{l}\" is listed twice")),
            Ok(l) if r.via.is_some() && l == super::FLOOR => cx.err(
                format!("{key}.to[{i}]"),
                "a relay route (with `via`) has no floor: route the floor from the source",
            ),
            Ok(l) if via.as_ref() == Some(&l) => {
                cx.err(format!("{key}.to[{i}]"), format!("\"{l}\" is the pivot language (`via`) itself"))
            }
            Ok(l) if source.is_some_and(|s| s.language == l) => {
                cx.err(format!("{key}.to[{i}]"), format!("\"{l}\" is the source's own language"))
            }
            Ok(l) => {
                if let Some(src) = source {
                    let pair = (src.id.clone(), l.clone());
                    if let Some(first) = routed.get(&pair) {
                        cx.err(format!("{key}.to[{i}]"), format!("{} → {l} is already routed by {first}", src.id));
                    } else {
                        routed.insert(pair, key.to_string());
                    }
                }
                to.push(l)
            }
            Err(e) => cx.err(format!("{key}.to[{i}]"), e),
        }
    }
    if let Some(v) = &r.voice {
        let protocol = config.engine.protocol;
        let voices = vocab::voices(protocol);
        if voices.is_empty() {
            cx.err(format!("{key}.voice"), format!("the {} protocol has no voices", protocol.as_str()));
        } else if !voices.contains(&v.as_str()) {
            let mut sorted = voices.to_vec();
            sorted.sort_unstable();
            let why = if vocab::GA_VOICES.contains(&v.as_str()) {
                format!("voice \"{v}\" is not part of the {} protocol", protocol.as_str())
            } else {
                format!("unknown voice \"{v}\"{}", did_you_mean(v, voices))
            };
            cx.err(format!("{key}.voice"), format!("{why} (expected one of: {})", sorted.join(", ")));
        }
    }
    if let Some(p) = &r.prompt
        && cx.rejected.contains(&("prompt", p.clone()))
    {
        quiet_failure = true;
    } else if let Some(p) = &r.prompt
        && !config.prompts.iter().any(|x| &x.id == p)
    {
        cx.err(
            format!("{key}.prompt"),
            format!("no prompt with id \"{p}\"{}", did_you_mean(p, config.prompts.iter().map(|x| x.id.as_str()))),
        );
    }
    let mut sinks: Vec<String> = Vec::new();
    for (i, s) in r.sinks.iter().enumerate() {
        if sinks.contains(s) {
            cx.err(format!("{key}.sinks[{i}]"), format!("sink \"{s}\" is listed twice"));
        } else if cx.rejected.contains(&("sink", s.clone())) {
            quiet_failure = true;
        } else if !config.sinks.iter().any(|x| &x.id == s) {
            cx.err(
                format!("{key}.sinks[{i}]"),
                format!("no sink with id \"{s}\"{}", did_you_mean(s, config.sinks.iter().map(|x| x.id.as_str()))),
            );
        } else {
            sinks.push(s.clone());
        }
    }
    let policy = match r.on_plugin_failure.as_deref().unwrap_or("stop-route") {
        "stop-route" => FailurePolicy::StopRoute,
        "restart" => FailurePolicy::Restart,
        "exit" => FailurePolicy::Exit,
        other => {
            let known = ["stop-route", "restart", "exit"];
            cx.err(
                format!("{key}.on_plugin_failure"),
                format!(
                    "unknown policy \"{other}\"{} (expected one of: {})",
                    did_you_mean(other, known),
                    known.join(", ")
                ),
            );
            FailurePolicy::StopRoute
        }
    };
    if r.floor && via.is_some() {
        cx.err(format!("{key}.floor"), "a relay route (with `via`) has no floor of its own: route the source's floor");
    }
    let gate_release_ms = match r.gate_release_ms {
        None => super::GATE_RELEASE_MS,
        Some(ms) if ms <= 60_000 => ms,
        Some(ms) => {
            cx.err(format!("{key}.gate_release_ms"), format!("{ms} is outside 0..=60000"));
            super::GATE_RELEASE_MS
        }
    };
    (cx.errors.len() == before && !quiet_failure).then(|| RouteSpec {
        source: r.source,
        to,
        via,
        voice: r.voice,
        prompt: r.prompt,
        sinks,
        on_plugin_failure: policy,
        floor: r.floor,
        gate_while: r.gate_while,
        gate_release_ms,
        key: key.to_string(),
    })
}

/// With the offline engine: every translated route language has an installed pair.
#[cfg(feature = "offline")]
fn offline_languages(cx: &mut Ctx, config: &Config) {
    if config.engine.provider != Provider::Local
        || config.engine.local_engine != "offline"
        || config.engine.url.is_some()
    {
        return;
    }
    let installed: Vec<&str> = crate::serve::offline::installed_languages().into_iter().map(|(t, _)| t).collect();
    for r in &config.routes {
        for lang in r.to.iter().filter(|t| *t != super::FLOOR) {
            let primary = lang.split('-').next().unwrap_or(lang);
            if !installed.contains(&primary) {
                cx.err(
                    format!("{}.to", r.key),
                    format!(
                        "the offline engine cannot interpret en→{lang}: no apertium pair with an espeak-ng voice is installed for it (installed: {})",
                        installed.iter().map(|t| format!("en→{t}")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
}

/// Checks the relay routes: each pivot (source → `via`) is routed by some route, and following
/// pivots never comes back to where it started.
fn relays(cx: &mut Ctx, config: &Config, routed: &BTreeMap<(String, String), String>) {
    let via_of = |source: &str, lang: &str| {
        config.routes.iter().find(|r| r.source == source && r.to.iter().any(|t| t == lang)).and_then(|r| r.via.clone())
    };
    for r in &config.routes {
        let Some(via) = &r.via else { continue };
        if !routed.contains_key(&(r.source.clone(), via.clone())) {
            cx.err(
                format!("{}.via", r.key),
                format!("no route translates source \"{}\" into \"{via}\" (add \"{via}\" to a route's `to`)", r.source),
            );
            continue;
        }
        // Follow the pivots: source → via → its via …; a language seen twice is a cycle.
        let mut chain = vec![r.to.first().cloned().unwrap_or_default(), via.clone()];
        let mut at = via.clone();
        while let Some(next) = via_of(&r.source, &at) {
            let cycle = chain.contains(&next) || r.to.contains(&next);
            chain.push(next.clone());
            if cycle {
                cx.err(
                    format!("{}.via", r.key),
                    format!("relay cycle: {} (source \"{}\")", chain.join(" via "), r.source),
                );
                break;
            }
            at = next;
        }
    }
}

/// What [`check_plugins`] found: errors (exit 2) and warnings, plus the instances it made.
#[derive(Debug, Default)]
pub struct PluginCheck {
    /// Plugin libraries that failed to load, when the config needs a plugin it cannot find
    /// (the likely cause of those errors: print them first). One line each.
    pub load_errors: Vec<ConfigError>,
    /// One line each.
    pub errors: Vec<ConfigError>,
    /// One line each.
    pub warnings: Vec<String>,
    /// Instances created, as (kind, instance id).
    pub instances: Vec<(PluginKind, String)>,
}

/// Checks every plugin reference against `registry` and creates each instance once (as `tolk
/// run` would, without starting it), so that each plugin validates its own table. Then the
/// files the sink instances declare (`output_files`) are checked: each writable, none shared
/// by two outputs, none holding several languages' audio (see [`outputs`]).
pub fn check_plugins(config: &Config, registry: &Registry) -> PluginCheck {
    let mut out = PluginCheck::default();
    let mut cx = Ctx { file: config.file.clone(), errors: vec![], rejected: BTreeSet::new() };
    let mut missing = false;
    let mut written: Vec<Written> = vec![];
    let host = |id: &str, plugin: &str| HostServices {
        instance_id: id.to_string(),
        plugin_id: plugin.to_string(),
        config_dir: config.dir.clone(),
    };
    for s in &config.sources {
        if !known(&mut cx, registry, PluginKind::Source, &s.key, &s.plugin) {
            missing = true;
            continue;
        }
        match registry.create_source(&s.plugin, &s.config, host(&s.id, &s.plugin)) {
            Ok(_) => out.instances.push((PluginKind::Source, s.id.clone())),
            Err(e) => plugin_error(&mut cx, &s.key, &e, None),
        }
    }
    for p in &config.prompts {
        if !known(&mut cx, registry, PluginKind::Prompt, &p.key, &p.plugin) {
            missing = true;
            continue;
        }
        match registry.create_prompt(&p.plugin, &p.config_text(None), host(&p.id, &p.plugin)) {
            Ok(_) => out.instances.push((PluginKind::Prompt, p.id.clone())),
            Err(e) => plugin_error(&mut cx, &p.key, &e, None),
        }
    }
    for s in &config.sinks {
        if !known(&mut cx, registry, PluginKind::Sink, &s.key, &s.plugin) {
            missing = true;
            continue;
        }
        let langs = config.sink_languages(&s.id);
        let expansions: Vec<Option<String>> =
            if s.per_language() && !langs.is_empty() { langs.iter().cloned().map(Some).collect() } else { vec![None] };
        for lang in expansions {
            let id = match &lang {
                Some(l) => format!("{}:{l}", s.id),
                None => s.id.clone(),
            };
            match registry.create_sink(&s.plugin, &s.config_text(lang.as_deref()), host(&id, &s.plugin)) {
                Ok(mut sink) => {
                    // A format the host cannot convert to is refused here, for `check` and `run`.
                    if let Err(e) = sink.format() {
                        let suffix = lang.as_deref().map(|l| format!(" (for {l})")).unwrap_or_default();
                        cx.err(s.key.clone(), format!("plugin \"{}\" {e}{suffix}", s.plugin));
                        continue;
                    }
                    let files = match sink.output_files() {
                        Ok(files) => files,
                        Err(e) => {
                            plugin_error(&mut cx, &s.key, &e, lang.as_deref());
                            continue;
                        }
                    };
                    if !s.per_language()
                        && langs.len() > 1
                        && let Ok(Some(_)) = sink.format()
                    {
                        // One instance receives every language's audio: into one file, that
                        // is one language's recording holding another's.
                        for (key, path) in &files {
                            cx.err(
                                format!("{}.config.{key}", s.key),
                                format!(
                                    "{} would hold the audio of {} languages ({}) in one file; put {{lang}} in the path for one file per language",
                                    outputs::shown(path),
                                    langs.len(),
                                    langs.join(", ")
                                ),
                            );
                        }
                        if files.is_empty() {
                            out.warnings.push(format!(
                                "{}: {}: sink \"{}\" receives audio in {} languages ({}) into one instance; put {{lang}} in its config for one per language",
                                config.file,
                                s.key,
                                s.id,
                                langs.len(),
                                langs.join(", ")
                            ));
                        }
                    }
                    for (key, path) in files {
                        written.push(Written {
                            sink: s.key.clone(),
                            key,
                            path,
                            instance: id.clone(),
                            lang: lang.clone(),
                        });
                    }
                    out.instances.push((PluginKind::Sink, id));
                }
                Err(e) => plugin_error(&mut cx, &s.key, &e, lang.as_deref()),
            }
        }
    }
    check_outputs(&mut cx, &written);
    // Library load errors matter when something the config needs is missing, and then they
    // come first: they are the cause of the "no … plugin" lines. Otherwise a broken
    // third-party library elsewhere on the path is only worth a warning.
    let mut load_errors = Ctx { file: config.file.clone(), errors: vec![], rejected: BTreeSet::new() };
    for e in &registry.errors {
        if missing {
            load_errors.err("", format!("plugin library failed to load: {e}"));
        } else {
            out.warnings.push(format!("plugin library failed to load: {e}"));
        }
    }
    out.warnings.extend(registry.warnings.iter().cloned());
    out.load_errors = load_errors.errors;
    out.errors = cx.errors;
    out
}

/// A file a sink instance declared it writes.
struct Written {
    /// The sink's key path (`sink[1]`).
    sink: String,
    /// The plugin's config key naming the file (`vtt`).
    key: String,
    path: PathBuf,
    /// The instance id (`captions:es`).
    instance: String,
    /// The language of a per-language instance.
    lang: Option<String>,
}

/// Every declared output can be written, and none shares a file with another.
fn check_outputs(cx: &mut Ctx, written: &[Written]) {
    let mut seen: BTreeMap<PathBuf, &Written> = BTreeMap::new();
    for w in written {
        let key = format!("{}.config.{}", w.sink, w.key);
        if let Some(why) = outputs::unwritable(&w.path) {
            let suffix = w.lang.as_ref().map(|l| format!(" (for {l})")).unwrap_or_default();
            cx.err(key, format!("{why}{suffix}"));
            continue;
        }
        let file = outputs::identity(&w.path);
        match seen.get(&file) {
            Some(first) => cx.err(
                key,
                format!(
                    "{} is also written by {}.config.{} (instance {}); two outputs in one file corrupt each other",
                    outputs::shown(&w.path),
                    first.sink,
                    first.key,
                    first.instance
                ),
            ),
            None => {
                seen.insert(file, w);
            }
        }
    }
}

fn known(cx: &mut Ctx, registry: &Registry, kind: PluginKind, key: &str, plugin: &str) -> bool {
    if registry.get(kind, plugin).is_some() {
        return true;
    }
    let other: BTreeSet<PluginKind> = registry.plugins.keys().filter(|(_, id)| id == plugin).map(|(k, _)| *k).collect();
    let msg = if let Some(k) = other.first() {
        format!("\"{plugin}\" is a {k} plugin, not a {kind} plugin")
    } else {
        let hint = registry.suggest(kind, plugin).map(|s| format!(" (did you mean \"{s}\"?)")).unwrap_or_default();
        // A library that failed to load may be the one that has it: say so, naming it.
        let cause = match registry.errors.as_slice() {
            [] => String::new(),
            [one] => format!(" (perhaps it is in {}, which failed to load: see above)", one.path().display()),
            many => {
                format!(" (perhaps it is in one of the {} plugin libraries that failed to load: see above)", many.len())
            }
        };
        format!("no {kind} plugin with id \"{plugin}\"{hint}{cause}; `tolk plugins` lists what is installed")
    };
    cx.err(format!("{key}.plugin"), msg);
    false
}

fn plugin_error(cx: &mut Ctx, key: &str, e: &PluginError, lang: Option<&str>) {
    let suffix = lang.map(|l| format!(" (for {l})")).unwrap_or_default();
    // A config error's message starts with the plugin's own key path: `path: cannot open …`.
    if e.kind() == ErrorKind::CONFIG
        && let Some((k, m)) = e.message().split_once(": ")
        && !k.is_empty()
        && !k.contains(' ')
    {
        cx.err(format!("{key}.config.{k}"), format!("{m}{suffix}"));
    } else {
        cx.err(format!("{key}.config"), format!("{e}{suffix}"));
    }
}
