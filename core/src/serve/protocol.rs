//! Event and session shapes of the three dialects the server speaks — GA, the legacy 2024-10-01
//! beta, and the Realtime Translation API — at the JSON level, with the server's own types.
//!
//! The server keeps one canonical [`SessionConfig`]; this module renders it in the GA nested
//! shape or the beta flat shape, and applies a client's `session.update` payload to it with the
//! real service's validation: an unknown field is `unknown_parameter`, a wrong type
//! `invalid_type`, a bad value `invalid_value`, a GA update without `session.type`
//! `missing_required_parameter`, each with the dotted `param` path. An update is applied
//! all-or-nothing: on error the session keeps its previous config. A `session.model` other
//! than the URL's is not such an error: the model cannot change, so it is ignored and the rest
//! of the update applies (clients send their configured model with every update).
//!
//! Which voices, ranges and value sets are valid comes from [`crate::vocab`], the vocabulary the
//! config validator and the client use too. Beyond that it deliberately shares no types with the
//! client in `crate::realtime`: the two meet only on the wire, which makes client-vs-server tests
//! a real cross-check.

use std::ops::RangeInclusive;

use serde_json::{Map, Value, json};

use crate::{
    audio::g711,
    vocab::{self, GA_VOICES, LEGACY_VOICES},
};

/// Which event vocabulary and session shape a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The GA protocol (`/v1/realtime`, `/openai/v1/realtime`).
    Ga,
    /// The legacy 2024-10-01 beta protocol (header `OpenAI-Beta: realtime=v1`, Azure preview).
    Beta,
}

impl Dialect {
    /// The event name of a response/item event in this dialect (`ga` is the GA name).
    pub fn name(self, ga: &'static str) -> &'static str {
        if self == Dialect::Ga { ga } else { vocab::beta_name(ga) }
    }
}

/// An audio encoding of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// PCM16 little-endian, 24 kHz mono.
    Pcm16,
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
}

impl AudioFormat {
    fn ga_json(self) -> Value {
        match self {
            AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24000}),
            AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
            AudioFormat::Pcma => json!({"type": "audio/pcma"}),
        }
    }

    /// The beta name (`pcm16`, `g711_ulaw`, `g711_alaw`).
    pub fn beta_name(self) -> &'static str {
        match self {
            AudioFormat::Pcm16 => "pcm16",
            AudioFormat::Pcmu => "g711_ulaw",
            AudioFormat::Pcma => "g711_alaw",
        }
    }
}

/// An error the server reports in an `error` event (§5.3 of the protocol reference).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// `invalid_request_error` or `server_error`.
    pub kind: String,
    /// Machine-readable code, e.g. `unknown_parameter`; `None` for some real errors.
    pub code: Option<String>,
    /// Human-readable message, in the real service's wording where known.
    pub message: String,
    /// Dotted path of the offending field, e.g. `session.audio.output.voice`.
    pub param: Option<String>,
}

impl ApiError {
    /// An `invalid_request_error` with `code`, `message` and `param`.
    pub fn invalid(code: Option<&str>, message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            kind: "invalid_request_error".into(),
            code: code.map(str::to_string),
            message: message.into(),
            param: param.map(str::to_string),
        }
    }

    /// A field the server does not know.
    pub fn unknown_parameter(path: &str) -> ApiError {
        ApiError::invalid(Some("unknown_parameter"), format!("Unknown parameter: '{path}'."), Some(path))
    }

    /// A required field is missing.
    pub fn missing(path: &str) -> ApiError {
        ApiError::invalid(
            Some("missing_required_parameter"),
            format!("Missing required parameter: '{path}'."),
            Some(path),
        )
    }

    /// A field has the wrong JSON type.
    pub fn invalid_type(path: &str, expected: &str, got: &Value) -> ApiError {
        ApiError::invalid(
            Some("invalid_type"),
            format!("Invalid type for '{path}': expected {expected}, but got {} instead.", json_type(got)),
            Some(path),
        )
    }

    /// A field has a value out of range or not in its set.
    pub fn invalid_value(path: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(Some("invalid_value"), message, Some(path))
    }

    /// The `error` server event for this error; `client_event_id` is the failing client event's id.
    pub fn to_event(&self, client_event_id: Option<&str>) -> Value {
        json!({
            "type": "error",
            "error": {
                "type": self.kind,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                "event_id": client_event_id,
            }
        })
    }
}

/// "a string", "an integer", … for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Server-side voice activity detection settings (`turn_detection`).
#[derive(Debug, Clone, PartialEq)]
pub struct TurnDetection {
    /// `semantic_vad` rather than `server_vad` (the server runs its energy VAD for both; the
    /// eagerness picks the silence duration).
    pub semantic: bool,
    /// 0.0–1.0; higher needs louder audio.
    pub threshold: f64,
    /// Audio kept before the detected speech start.
    pub prefix_padding_ms: u32,
    /// Silence that ends a turn.
    pub silence_duration_ms: u32,
    /// Start a response when a turn ends.
    pub create_response: bool,
    /// Cancel a running response when speech starts.
    pub interrupt_response: bool,
    /// GA server_vad only; kept and reported, not acted on.
    pub idle_timeout_ms: Option<u32>,
    /// semantic_vad only.
    pub eagerness: String,
}

impl TurnDetection {
    /// The defaults of the dialect (the beta launch reported 200 ms of silence, GA 500 ms).
    pub fn server_vad(dialect: Dialect) -> TurnDetection {
        TurnDetection {
            semantic: false,
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: if dialect == Dialect::Beta { 200 } else { 500 },
            create_response: true,
            interrupt_response: true,
            idle_timeout_ms: None,
            eagerness: "auto".into(),
        }
    }

    /// The silence that ends a turn: `silence_duration_ms`, or the eagerness for semantic VAD.
    pub fn effective_silence_ms(&self) -> u32 {
        if !self.semantic {
            return self.silence_duration_ms;
        }
        match self.eagerness.as_str() {
            "high" => 250,
            "low" => 900,
            _ => 500,
        }
    }

    fn to_json(&self, dialect: Dialect) -> Value {
        if self.semantic {
            return json!({
                "type": "semantic_vad", "eagerness": self.eagerness,
                "create_response": self.create_response, "interrupt_response": self.interrupt_response,
            });
        }
        let mut v = json!({
            "type": "server_vad", "threshold": self.threshold, "prefix_padding_ms": self.prefix_padding_ms,
            "silence_duration_ms": self.silence_duration_ms, "create_response": self.create_response,
            "interrupt_response": self.interrupt_response,
        });
        if dialect == Dialect::Ga {
            v["idle_timeout_ms"] = json!(self.idle_timeout_ms);
        }
        v
    }
}

/// Input transcription settings (`audio.input.transcription` / `input_audio_transcription`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    pub model: String,
    pub language: Option<String>,
    pub prompt: Option<String>,
}

/// The effective configuration of a realtime (GA or beta) session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub id: String,
    pub model: String,
    pub expires_at: u64,
    /// GA `output_modalities` (`["audio"]` or `["text"]`); beta `modalities`.
    pub modalities: Vec<String>,
    pub instructions: String,
    pub voice: Value,
    pub input_format: AudioFormat,
    pub output_format: AudioFormat,
    pub transcription: Option<Transcription>,
    pub turn_detection: Option<TurnDetection>,
    pub noise_reduction: Option<String>,
    pub speed: f64,
    pub tools: Vec<Value>,
    pub tool_choice: Value,
    pub temperature: f64,
    pub max_output_tokens: Value,
    pub truncation: Value,
    pub tracing: Value,
    pub include: Value,
}

/// The server's default instructions (visible in `session.created`, as on the real service).
pub const DEFAULT_INSTRUCTIONS: &str = "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. \
Act like a human, but remember that you aren't a human and that you can't do human things in the real world.";

impl SessionConfig {
    /// The defaults the server reports in `session.created`.
    pub fn new(dialect: Dialect, id: String, model: String, expires_at: u64) -> SessionConfig {
        SessionConfig {
            id,
            model,
            expires_at,
            modalities: match dialect {
                Dialect::Ga => vec!["audio".into()],
                Dialect::Beta => vec!["text".into(), "audio".into()],
            },
            instructions: DEFAULT_INSTRUCTIONS.into(),
            voice: json!("alloy"),
            input_format: AudioFormat::Pcm16,
            output_format: AudioFormat::Pcm16,
            transcription: None,
            turn_detection: Some(TurnDetection::server_vad(dialect)),
            noise_reduction: None,
            speed: 1.0,
            tools: Vec::new(),
            tool_choice: json!("auto"),
            temperature: 0.8,
            max_output_tokens: json!("inf"),
            truncation: json!("auto"),
            tracing: Value::Null,
            include: Value::Null,
        }
    }

    /// Whether responses produce audio (else text only).
    pub fn audio_out(&self) -> bool {
        self.modalities.iter().any(|m| m == "audio")
    }

    /// The voice name (or custom voice id) for the engine.
    pub fn voice_name(&self) -> String {
        match &self.voice {
            Value::String(s) => s.clone(),
            Value::Object(o) => o.get("id").and_then(Value::as_str).unwrap_or("custom").to_string(),
            _ => "alloy".into(),
        }
    }

    /// The session object in the dialect's shape.
    pub fn to_json(&self, dialect: Dialect) -> Value {
        let transcription = |ga: bool| match &self.transcription {
            None => Value::Null,
            Some(t) => {
                let mut v = json!({"model": t.model});
                if let Some(l) = &t.language {
                    v["language"] = json!(l);
                }
                if let Some(p) = &t.prompt {
                    v["prompt"] = json!(p);
                } else if !ga {
                    v["prompt"] = json!("");
                }
                v
            }
        };
        let noise = self.noise_reduction.as_ref().map(|t| json!({"type": t})).unwrap_or(Value::Null);
        let turn = self.turn_detection.as_ref().map(|t| t.to_json(dialect)).unwrap_or(Value::Null);
        match dialect {
            Dialect::Ga => json!({
                "type": "realtime",
                "object": "realtime.session",
                "id": self.id,
                "model": self.model,
                "expires_at": self.expires_at,
                "output_modalities": self.modalities,
                "instructions": self.instructions,
                "audio": {
                    "input": {
                        "format": self.input_format.ga_json(),
                        "transcription": transcription(true),
                        "noise_reduction": noise,
                        "turn_detection": turn,
                    },
                    "output": {
                        "format": self.output_format.ga_json(),
                        "voice": self.voice,
                        "speed": self.speed,
                    },
                },
                "tools": self.tools,
                "tool_choice": self.tool_choice,
                "max_output_tokens": self.max_output_tokens,
                "truncation": self.truncation,
                "tracing": self.tracing,
                "include": self.include,
                "prompt": null,
            }),
            Dialect::Beta => json!({
                "object": "realtime.session",
                "id": self.id,
                "model": self.model,
                "expires_at": self.expires_at,
                "modalities": self.modalities,
                "instructions": self.instructions,
                "voice": self.voice,
                "input_audio_format": self.input_format.beta_name(),
                "output_audio_format": self.output_format.beta_name(),
                "input_audio_transcription": transcription(false),
                "turn_detection": turn,
                "input_audio_noise_reduction": noise,
                "tools": self.tools,
                "tool_choice": self.tool_choice,
                "temperature": self.temperature,
                "max_response_output_tokens": self.max_output_tokens,
                "speed": self.speed,
                "tracing": self.tracing,
            }),
        }
    }

    /// Applies a `session.update` payload; all-or-nothing. `audio_was_output` forbids a voice
    /// change, as on the real service.
    pub fn apply_update(&mut self, dialect: Dialect, session: &Value, audio_was_output: bool) -> Result<(), ApiError> {
        let mut next = self.clone();
        let map = obj(session, "session")?;
        match dialect {
            Dialect::Ga => next.apply_ga(map)?,
            Dialect::Beta => next.apply_beta(map)?,
        }
        if audio_was_output && next.voice != self.voice {
            let param = if dialect == Dialect::Ga { "session.audio.output.voice" } else { "session.voice" };
            return Err(ApiError::invalid(
                Some("cannot_update_voice"),
                "Cannot update a conversation's voice if assistant audio is present.",
                Some(param),
            ));
        }
        *self = next;
        Ok(())
    }

    fn apply_ga(&mut self, map: &Map<String, Value>) -> Result<(), ApiError> {
        const KEYS: &[&str] = &[
            "type",
            "model",
            "output_modalities",
            "instructions",
            "audio",
            "include",
            "tracing",
            "tools",
            "tool_choice",
            "max_output_tokens",
            "truncation",
            "prompt",
            "parallel_tool_calls",
            "reasoning",
            "id",
            "object",
            "expires_at",
        ];
        check_keys(map, "session", KEYS)?;
        match map.get("type") {
            None => return Err(ApiError::missing("session.type")),
            Some(Value::String(t)) if t == "realtime" => {}
            Some(Value::String(t)) if t == "transcription" => {
                return Err(ApiError::invalid_value(
                    "session.type",
                    "Invalid value: 'transcription'. This session is a 'realtime' session; its type cannot be changed.",
                ));
            }
            Some(v @ Value::String(_)) => return Err(bad_enum("session.type", v, &["realtime", "transcription"])),
            Some(v) => return Err(ApiError::invalid_type("session.type", "a string", v)),
        }
        self.apply_model(map)?;
        if let Some(v) = map.get("output_modalities") {
            let list = str_list(v, "session.output_modalities", &["text", "audio"])?;
            if list.len() != 1 {
                return Err(ApiError::invalid_value(
                    "session.output_modalities",
                    "Invalid value: output_modalities must be exactly one of ['audio'] or ['text'].",
                ));
            }
            self.modalities = list;
        }
        if let Some(v) = map.get("instructions") {
            self.instructions = string(v, "session.instructions")?.to_string();
        }
        if let Some(audio) = map.get("audio") {
            let audio = obj(audio, "session.audio")?;
            check_keys(audio, "session.audio", &["input", "output"])?;
            if let Some(input) = audio.get("input") {
                let input = obj(input, "session.audio.input")?;
                check_keys(
                    input,
                    "session.audio.input",
                    &["format", "transcription", "noise_reduction", "turn_detection"],
                )?;
                if let Some(f) = input.get("format") {
                    self.input_format = ga_format(f, "session.audio.input.format")?;
                }
                if let Some(t) = input.get("transcription") {
                    self.transcription = transcription(t, "session.audio.input.transcription")?;
                }
                if let Some(n) = input.get("noise_reduction") {
                    self.noise_reduction = noise_reduction(n, "session.audio.input.noise_reduction")?;
                }
                if let Some(t) = input.get("turn_detection") {
                    self.turn_detection = turn_detection(t, "session.audio.input.turn_detection", Dialect::Ga)?;
                }
            }
            if let Some(output) = audio.get("output") {
                let output = obj(output, "session.audio.output")?;
                check_keys(output, "session.audio.output", &["format", "voice", "speed"])?;
                if let Some(f) = output.get("format") {
                    self.output_format = ga_format(f, "session.audio.output.format")?;
                }
                if let Some(v) = output.get("voice") {
                    self.voice = voice(v, "session.audio.output.voice", GA_VOICES, true)?;
                }
                if let Some(s) = output.get("speed") {
                    self.speed = number_in(s, "session.audio.output.speed", vocab::SPEED)?;
                }
            }
        }
        self.apply_common(map)?;
        if let Some(v) = map.get("max_output_tokens") {
            self.max_output_tokens = max_tokens(v, "session.max_output_tokens")?;
        }
        if let Some(v) = map.get("truncation") {
            match v {
                Value::String(s) if s == "auto" || s == "disabled" => self.truncation = v.clone(),
                Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("retention_ratio") => {
                    check_keys(o, "session.truncation", &["type", "retention_ratio", "token_limits"])?;
                    if let Some(r) = o.get("retention_ratio") {
                        number_in(r, "session.truncation.retention_ratio", 0.0..=1.0)?;
                    }
                    self.truncation = v.clone();
                }
                _ => return Err(bad_enum("session.truncation", v, &["auto", "disabled", "retention_ratio"])),
            }
        }
        if let Some(v) = map.get("include") {
            match v {
                Value::Null => self.include = Value::Null,
                _ => {
                    str_list(v, "session.include", &["item.input_audio_transcription.logprobs"])?;
                    self.include = v.clone();
                }
            }
        }
        Ok(())
    }

    fn apply_beta(&mut self, map: &Map<String, Value>) -> Result<(), ApiError> {
        const KEYS: &[&str] = &[
            "model",
            "modalities",
            "instructions",
            "voice",
            "input_audio_format",
            "output_audio_format",
            "input_audio_transcription",
            "turn_detection",
            "input_audio_noise_reduction",
            "tools",
            "tool_choice",
            "temperature",
            "max_response_output_tokens",
            "speed",
            "tracing",
            "include",
            "id",
            "object",
            "expires_at",
        ];
        check_keys(map, "session", KEYS)?;
        self.apply_model(map)?;
        if let Some(v) = map.get("modalities") {
            let list = str_list(v, "session.modalities", &["text", "audio"])?;
            if !list.iter().any(|m| m == "text") {
                return Err(ApiError::invalid_value(
                    "session.modalities",
                    "Invalid modalities: ['audio']. Supported combinations are: ['text'] and ['audio', 'text'].",
                ));
            }
            self.modalities = list;
        }
        if let Some(v) = map.get("instructions") {
            self.instructions = string(v, "session.instructions")?.to_string();
        }
        if let Some(v) = map.get("voice") {
            self.voice = voice(v, "session.voice", LEGACY_VOICES, false)?;
        }
        if let Some(v) = map.get("input_audio_format") {
            self.input_format = beta_format(v, "session.input_audio_format")?;
        }
        if let Some(v) = map.get("output_audio_format") {
            self.output_format = beta_format(v, "session.output_audio_format")?;
        }
        if let Some(t) = map.get("input_audio_transcription") {
            self.transcription = transcription(t, "session.input_audio_transcription")?;
        }
        if let Some(t) = map.get("turn_detection") {
            self.turn_detection = turn_detection(t, "session.turn_detection", Dialect::Beta)?;
        }
        if let Some(n) = map.get("input_audio_noise_reduction") {
            self.noise_reduction = noise_reduction(n, "session.input_audio_noise_reduction")?;
        }
        if let Some(v) = map.get("temperature") {
            self.temperature = number_in(v, "session.temperature", vocab::TEMPERATURE)?;
        }
        if let Some(v) = map.get("max_response_output_tokens") {
            self.max_output_tokens = max_tokens(v, "session.max_response_output_tokens")?;
        }
        if let Some(s) = map.get("speed") {
            self.speed = number_in(s, "session.speed", vocab::SPEED)?;
        }
        self.apply_common(map)
    }

    /// `session.model`: the model of a session is fixed by its URL (the deployment on Azure), and
    /// clients (agent SDKs) send their configured model in every update. A different model is
    /// therefore not an error that would lose the rest of the update: it is type-checked and
    /// ignored, and `session.updated` reports the model in effect. (The protocol notes say only
    /// that the model cannot be changed; whether the service ignores it silently or also sends an
    /// error is not documented — tolk chose silence, as an error per update would be logged by
    /// clients on every update.)
    fn apply_model(&mut self, map: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(v) = map.get("model") {
            let m = string(v, "session.model")?;
            if m != self.model {
                tracing::debug!("tolk serve: session.update names model '{m}'; the session keeps '{}'", self.model);
            }
        }
        Ok(())
    }

    /// Fields with the same shape in both dialects.
    fn apply_common(&mut self, map: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(v) = map.get("tools") {
            let Value::Array(tools) = v else { return Err(ApiError::invalid_type("session.tools", "an array", v)) };
            for (i, t) in tools.iter().enumerate() {
                let path = format!("session.tools[{i}]");
                let o = obj(t, &path)?;
                match o.get("type").and_then(Value::as_str) {
                    Some("function") => {
                        if !o.get("name").is_some_and(Value::is_string) {
                            return Err(ApiError::missing(&format!("{path}.name")));
                        }
                    }
                    Some("mcp") => {}
                    _ => {
                        return Err(bad_enum(
                            &format!("{path}.type"),
                            o.get("type").unwrap_or(&Value::Null),
                            &["function", "mcp"],
                        ));
                    }
                }
            }
            self.tools = tools.clone();
        }
        if let Some(v) = map.get("tool_choice") {
            match v {
                Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => {}
                Value::Object(_) => {}
                _ => return Err(bad_enum("session.tool_choice", v, &["auto", "none", "required"])),
            }
            self.tool_choice = v.clone();
        }
        if let Some(v) = map.get("tracing") {
            match v {
                Value::Null | Value::Object(_) => {}
                Value::String(s) if s == "auto" => {}
                _ => return Err(bad_enum("session.tracing", v, &["auto"])),
            }
            if !self.tracing.is_null() && *v != self.tracing {
                return Err(ApiError::invalid_value("session.tracing", "Tracing cannot be modified once enabled."));
            }
            self.tracing = v.clone();
        }
        Ok(())
    }
}

/// The object at `v`, or an `invalid_type` error naming `path`.
pub fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| ApiError::invalid_type(path, "an object", v))
}

/// The string at `v`, or an `invalid_type` error naming `path`.
pub fn string<'a>(v: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    v.as_str().ok_or_else(|| ApiError::invalid_type(path, "a string", v))
}

/// First key of `map` not in `allowed` → `unknown_parameter` at `path.key`.
pub fn check_keys(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::unknown_parameter(&format!("{path}.{k}"))),
        None => Ok(()),
    }
}

fn bad_enum(path: &str, got: &Value, allowed: &[&str]) -> ApiError {
    let got = match got {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let list: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    ApiError::invalid_value(path, format!("Invalid value: '{got}'. Supported values are: {}.", list.join(", ")))
}

fn str_list(v: &Value, path: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = v else { return Err(ApiError::invalid_type(path, "an array", v)) };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let s = string(item, &p)?;
        if !allowed.contains(&s) {
            return Err(bad_enum(&p, item, allowed));
        }
        if !out.iter().any(|o: &String| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn number_in(v: &Value, path: &str, range: RangeInclusive<f64>) -> Result<f64, ApiError> {
    let x = v.as_f64().ok_or_else(|| ApiError::invalid_type(path, "a number", v))?;
    let (lo, hi) = (*range.start(), *range.end());
    if !range.contains(&x) {
        return Err(ApiError::invalid_value(
            path,
            format!("Invalid '{path}': {x} is out of range; expected a value between {lo} and {hi}."),
        ));
    }
    Ok(x)
}

fn uint_in(v: &Value, path: &str, range: RangeInclusive<u32>) -> Result<u32, ApiError> {
    let x = v.as_u64().ok_or_else(|| ApiError::invalid_type(path, "a non-negative integer", v))?;
    let (lo, hi) = (u64::from(*range.start()), u64::from(*range.end()));
    if !(lo..=hi).contains(&x) {
        return Err(ApiError::invalid_value(
            path,
            format!("Invalid '{path}': {x} is out of range; expected a value between {lo} and {hi}."),
        ));
    }
    Ok(x as u32)
}

fn max_tokens(v: &Value, path: &str) -> Result<Value, ApiError> {
    match v {
        Value::String(s) if s == "inf" => Ok(v.clone()),
        Value::Number(_) => Ok(json!(uint_in(v, path, vocab::MAX_OUTPUT_TOKENS)?)),
        _ => Err(ApiError::invalid_value(path, "Invalid value: expected an integer between 1 and 4096, or 'inf'.")),
    }
}

fn ga_format(v: &Value, path: &str) -> Result<AudioFormat, ApiError> {
    let o = obj(v, path)?;
    check_keys(o, path, &["type", "rate"])?;
    let t = o.get("type").ok_or_else(|| ApiError::missing(&format!("{path}.type")))?;
    let f = match string(t, &format!("{path}.type"))? {
        "audio/pcm" => AudioFormat::Pcm16,
        "audio/pcmu" => AudioFormat::Pcmu,
        "audio/pcma" => AudioFormat::Pcma,
        _ => return Err(bad_enum(&format!("{path}.type"), t, &["audio/pcm", "audio/pcmu", "audio/pcma"])),
    };
    if let Some(r) = o.get("rate")
        && (f != AudioFormat::Pcm16 || r.as_u64() != Some(24000))
    {
        return Err(bad_enum(&format!("{path}.rate"), r, &["24000"]));
    }
    Ok(f)
}

fn beta_format(v: &Value, path: &str) -> Result<AudioFormat, ApiError> {
    match string(v, path)? {
        "pcm16" => Ok(AudioFormat::Pcm16),
        "g711_ulaw" => Ok(AudioFormat::Pcmu),
        "g711_alaw" => Ok(AudioFormat::Pcma),
        _ => Err(bad_enum(path, v, &["pcm16", "g711_ulaw", "g711_alaw"])),
    }
}

fn voice(v: &Value, path: &str, voices: &[&str], custom: bool) -> Result<Value, ApiError> {
    match v {
        Value::String(s) if voices.contains(&s.as_str()) => Ok(v.clone()),
        Value::Object(o) if custom => {
            check_keys(o, path, &["id"])?;
            match o.get("id") {
                Some(Value::String(id)) if !id.is_empty() => Ok(v.clone()),
                _ => Err(ApiError::missing(&format!("{path}.id"))),
            }
        }
        Value::String(_) => Err(bad_enum(path, v, voices)),
        _ => Err(ApiError::invalid_type(path, "a string", v)),
    }
}

fn transcription(v: &Value, path: &str) -> Result<Option<Transcription>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    let o = obj(v, path)?;
    check_keys(o, path, &["model", "language", "prompt"])?;
    let model = match o.get("model") {
        None => "whisper-1".to_string(),
        Some(m) => {
            let m = string(m, &format!("{path}.model"))?;
            if m.is_empty() {
                return Err(ApiError::invalid_value(
                    &format!("{path}.model"),
                    "Invalid value: ''. A model is required.",
                ));
            }
            m.to_string()
        }
    };
    let opt = |k: &str| -> Result<Option<String>, ApiError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) => Ok(Some(string(x, &format!("{path}.{k}"))?.to_string())),
        }
    };
    Ok(Some(Transcription { model, language: opt("language")?, prompt: opt("prompt")? }))
}

fn noise_reduction(v: &Value, path: &str) -> Result<Option<String>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    let o = obj(v, path)?;
    check_keys(o, path, &["type"])?;
    let t = o.get("type").ok_or_else(|| ApiError::missing(&format!("{path}.type")))?;
    match string(t, &format!("{path}.type"))? {
        s if vocab::NOISE_REDUCTION.contains(&s) => Ok(Some(s.to_string())),
        _ => Err(bad_enum(&format!("{path}.type"), t, vocab::NOISE_REDUCTION)),
    }
}

fn turn_detection(v: &Value, path: &str, dialect: Dialect) -> Result<Option<TurnDetection>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    let o = obj(v, path)?;
    let kind = match o.get("type") {
        None if dialect == Dialect::Beta => "server_vad",
        None => return Err(ApiError::missing(&format!("{path}.type"))),
        Some(t) => match string(t, &format!("{path}.type"))? {
            k if vocab::TURN_DETECTION_TYPES.contains(&k) => k,
            _ => return Err(bad_enum(&format!("{path}.type"), t, vocab::TURN_DETECTION_TYPES)),
        },
    };
    let mut td = TurnDetection::server_vad(dialect);
    td.semantic = kind == "semantic_vad";
    if td.semantic {
        check_keys(o, path, &["type", "eagerness", "create_response", "interrupt_response"])?;
    } else {
        let mut keys = vec![
            "type",
            "threshold",
            "prefix_padding_ms",
            "silence_duration_ms",
            "create_response",
            "interrupt_response",
        ];
        if dialect == Dialect::Ga {
            keys.push("idle_timeout_ms");
        }
        check_keys(o, path, &keys)?;
    }
    if let Some(x) = o.get("threshold") {
        td.threshold = number_in(x, &format!("{path}.threshold"), vocab::VAD_THRESHOLD)?;
    }
    if let Some(x) = o.get("prefix_padding_ms") {
        td.prefix_padding_ms = uint_in(x, &format!("{path}.prefix_padding_ms"), vocab::PREFIX_PADDING_MS)?;
    }
    if let Some(x) = o.get("silence_duration_ms") {
        td.silence_duration_ms = uint_in(x, &format!("{path}.silence_duration_ms"), vocab::SILENCE_DURATION_MS)?;
    }
    if let Some(x) = o.get("idle_timeout_ms") {
        td.idle_timeout_ms = if x.is_null() {
            None
        } else {
            Some(uint_in(x, &format!("{path}.idle_timeout_ms"), vocab::IDLE_TIMEOUT_MS)?)
        };
    }
    if let Some(x) = o.get("eagerness") {
        let e = string(x, &format!("{path}.eagerness"))?;
        if !vocab::EAGERNESS.contains(&e) {
            return Err(bad_enum(&format!("{path}.eagerness"), x, vocab::EAGERNESS));
        }
        td.eagerness = e.to_string();
    }
    for (k, slot) in [("create_response", &mut td.create_response), ("interrupt_response", &mut td.interrupt_response)]
    {
        if let Some(x) = o.get(k) {
            *slot = x.as_bool().ok_or_else(|| ApiError::invalid_type(&format!("{path}.{k}"), "a boolean", x))?;
        }
    }
    Ok(Some(td))
}

/// The translation session's configuration (`type: "translation"`).
#[derive(Debug, Clone, PartialEq)]
pub struct TranslationConfig {
    pub id: String,
    pub model: String,
    pub expires_at: u64,
    /// `audio.output.language`: the target language.
    pub language: String,
    /// `audio.input.transcription.model`: source captions when set.
    pub transcription: Option<String>,
    pub noise_reduction: Option<String>,
}

impl TranslationConfig {
    /// The session object.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "realtime.translation_session",
            "type": "translation",
            "model": self.model,
            "expires_at": self.expires_at,
            "audio": {
                "input": {
                    "transcription": self.transcription.as_ref().map(|m| json!({"model": m})),
                    "noise_reduction": self.noise_reduction.as_ref().map(|t| json!({"type": t})),
                },
                "output": {"language": self.language},
            },
        })
    }

    /// Applies a translation `session.update` (only the language, transcription and noise
    /// reduction may change); all-or-nothing.
    pub fn apply_update(&mut self, session: &Value) -> Result<(), ApiError> {
        let mut next = self.clone();
        let map = obj(session, "session")?;
        check_keys(map, "session", &["type", "audio", "model", "id", "object", "expires_at"])?;
        if let Some(t) = map.get("type")
            && t.as_str() != Some("translation")
        {
            return Err(bad_enum("session.type", t, &["translation"]));
        }
        if let Some(audio) = map.get("audio") {
            let audio = obj(audio, "session.audio")?;
            check_keys(audio, "session.audio", &["input", "output"])?;
            if let Some(input) = audio.get("input") {
                let input = obj(input, "session.audio.input")?;
                check_keys(input, "session.audio.input", &["transcription", "noise_reduction"])?;
                if let Some(t) = input.get("transcription") {
                    next.transcription = transcription(t, "session.audio.input.transcription")?.map(|t| t.model);
                }
                if let Some(n) = input.get("noise_reduction") {
                    next.noise_reduction = noise_reduction(n, "session.audio.input.noise_reduction")?;
                }
            }
            if let Some(output) = audio.get("output") {
                let output = obj(output, "session.audio.output")?;
                check_keys(output, "session.audio.output", &["language"])?;
                if let Some(l) = output.get("language") {
                    let l = string(l, "session.audio.output.language")?;
                    if !tolk_plugin_api::lang::is_tag(l) {
                        return Err(ApiError::invalid_value(
                            "session.audio.output.language",
                            format!("Invalid value: '{l}'. Expected a language code such as 'es' or 'pt-BR'."),
                        ));
                    }
                    next.language = l.to_string();
                }
            }
        }
        *self = next;
        Ok(())
    }
}

/// Decodes input audio bytes of `format` to 24 kHz PCM16 (G.711 is expanded and upsampled
/// ×3 by linear interpolation). `None` when PCM16 has an odd byte count.
pub fn decode_audio(format: AudioFormat, bytes: &[u8]) -> Option<Vec<i16>> {
    let narrow: Vec<i16> = match format {
        AudioFormat::Pcm16 => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            return Some(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect());
        }
        AudioFormat::Pcmu => bytes.iter().map(|&b| g711::ulaw_to_linear(b)).collect(),
        AudioFormat::Pcma => bytes.iter().map(|&b| g711::alaw_to_linear(b)).collect(),
    };
    let mut out = Vec::with_capacity(narrow.len() * 3);
    for (i, &s) in narrow.iter().enumerate() {
        let next = narrow.get(i + 1).copied().unwrap_or(s) as i32;
        let d = next - s as i32;
        out.extend([s, (s as i32 + d / 3) as i16, (s as i32 + 2 * d / 3) as i16]);
    }
    Some(out)
}

/// Encodes 24 kHz PCM16 output in `format` (G.711: averaged down to 8 kHz, then companded).
pub fn encode_audio(format: AudioFormat, samples: &[i16]) -> Vec<u8> {
    match format {
        AudioFormat::Pcm16 => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        AudioFormat::Pcmu | AudioFormat::Pcma => samples
            .chunks(3)
            .map(|c| {
                let avg = (c.iter().map(|&s| s as i32).sum::<i32>() / c.len() as i32) as i16;
                if format == AudioFormat::Pcmu { g711::linear_to_ulaw(avg) } else { g711::linear_to_alaw(avg) }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ga() -> SessionConfig {
        SessionConfig::new(Dialect::Ga, "sess_1".into(), "gpt-realtime".into(), 0)
    }

    #[test]
    fn ga_update_needs_type_and_names_unknown_fields() {
        let mut c = ga();
        let e = c.apply_update(Dialect::Ga, &json!({"instructions": "x"}), false).unwrap_err();
        assert_eq!((e.code.as_deref(), e.param.as_deref()), (Some("missing_required_parameter"), Some("session.type")));
        let e = c
            .apply_update(Dialect::Ga, &json!({"type": "realtime", "audio": {"output": {"voise": "x"}}}), false)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("session.audio.output.voise"));
        assert_eq!(e.code.as_deref(), Some("unknown_parameter"));
        let e = c
            .apply_update(Dialect::Ga, &json!({"type": "realtime", "audio": {"output": {"voice": "bob"}}}), false)
            .unwrap_err();
        assert_eq!(
            (e.code.as_deref(), e.param.as_deref()),
            (Some("invalid_value"), Some("session.audio.output.voice"))
        );
        assert_eq!(c, ga(), "a failed update changes nothing");
    }

    #[test]
    fn ga_update_applies_nested_fields() {
        let mut c = ga();
        let u = json!({"type": "realtime", "instructions": "Target language: es",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 700, "interrupt_response": false},
                                "transcription": {"model": "gpt-4o-transcribe", "language": "en"}},
                      "output": {"voice": "marin"}}});
        c.apply_update(Dialect::Ga, &u, false).unwrap();
        let td = c.turn_detection.as_ref().unwrap();
        assert_eq!((td.silence_duration_ms, td.interrupt_response, td.create_response), (700, false, true));
        assert_eq!(c.voice, json!("marin"));
        let j = c.to_json(Dialect::Ga);
        assert_eq!(j["audio"]["input"]["transcription"]["model"], "gpt-4o-transcribe");
        let e =
            c.apply_update(Dialect::Ga, &json!({"type": "realtime", "audio": {"output": {"voice": "cedar"}}}), true);
        assert_eq!(e.unwrap_err().code.as_deref(), Some("cannot_update_voice"));
    }

    #[test]
    fn beta_update_is_flat() {
        let mut c = SessionConfig::new(Dialect::Beta, "s".into(), "gpt-4o-realtime-preview".into(), 0);
        c.apply_update(
            Dialect::Beta,
            &json!({"voice": "echo", "turn_detection": null, "input_audio_format": "g711_ulaw"}),
            false,
        )
        .unwrap();
        let j = c.to_json(Dialect::Beta);
        assert_eq!((j["voice"].as_str(), j["input_audio_format"].as_str()), (Some("echo"), Some("g711_ulaw")));
        assert!(j["turn_detection"].is_null());
        let e = c.apply_update(Dialect::Beta, &json!({"voice": "marin"}), false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("session.voice"));
        let e = c.apply_update(Dialect::Beta, &json!({"audio": {}}), false).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("session.audio"));
    }

    #[test]
    fn g711_round_trips_within_companding_error() {
        for f in [AudioFormat::Pcmu, AudioFormat::Pcma] {
            for x in [-32000i16, -5000, -300, -1, 0, 1, 77, 1000, 12345, 32000] {
                let bytes = encode_audio(f, &[x, x, x]);
                assert_eq!(bytes.len(), 1);
                let back = decode_audio(f, &bytes).unwrap();
                let err = (back[0] as i32 - x as i32).abs();
                assert!(err <= (x as i32).abs() / 16 + 16, "{f:?} {x} -> {}", back[0]);
            }
        }
        assert_eq!(decode_audio(AudioFormat::Pcm16, &[1, 0, 2]), None);
        assert_eq!(decode_audio(AudioFormat::Pcm16, &[1, 0]), Some(vec![1]));
    }

    #[test]
    fn translation_update() {
        let mut t = TranslationConfig {
            id: "s".into(),
            model: "gpt-realtime-translate".into(),
            expires_at: 0,
            language: "en".into(),
            transcription: None,
            noise_reduction: None,
        };
        t.apply_update(&json!({"audio": {"output": {"language": "de"}}})).unwrap();
        assert_eq!(t.language, "de");
        let e = t.apply_update(&json!({"audio": {"output": {"language": "German!"}}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("session.audio.output.language"));
        let e = t.apply_update(&json!({"instructions": "x"})).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("unknown_parameter"));
    }
}
