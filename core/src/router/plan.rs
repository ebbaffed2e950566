//! The route graph of a run, built from a validated [`Config`]: one route per (source, target
//! language) — `floor` included —, one sink instance per sink and language when its config
//! mentions `{lang}` (one shared instance otherwise), and the failure policy that applies to
//! each source and sink instance.

use crate::config::{Config, FLOOR, FailurePolicy};

/// One route: a source into one language (or the floor).
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// Index into `Config::sources`.
    pub source: usize,
    /// Target language, or [`FLOOR`].
    pub language: String,
    /// Voice for the translated speech.
    pub voice: Option<String>,
    /// Index into `Config::prompts`.
    pub prompt: Option<usize>,
    /// Indices into [`Plan::sinks`].
    pub sinks: Vec<usize>,
    /// What happens when one of its plugins fails.
    pub policy: FailurePolicy,
    /// Relay: the route whose translated output is this route's input (instead of the source).
    pub via: Option<usize>,
    /// Index into `Config::routes`: the `[[route]]` it was expanded from.
    pub spec: usize,
}

impl RoutePlan {
    /// True for the untranslated original.
    pub fn is_floor(&self) -> bool {
        self.language == FLOOR
    }
}

/// One sink instance.
#[derive(Debug, Clone)]
pub struct SinkPlan {
    /// Instance id: the sink id, plus `:lang` for per-language instances.
    pub id: String,
    /// Plugin id.
    pub plugin: String,
    /// The plugin's table as TOML text, `{lang}` replaced.
    pub config: String,
    /// Routes feeding it.
    pub routes: Vec<usize>,
    /// The policy of its routes (see [`combine`]).
    pub policy: FailurePolicy,
}

/// The graph.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Routes in config order, languages in `to` order.
    pub routes: Vec<RoutePlan>,
    /// Sink instances.
    pub sinks: Vec<SinkPlan>,
    /// Per source (config order): the routes it feeds.
    pub source_routes: Vec<Vec<usize>>,
}

impl Plan {
    /// Builds the graph of a valid config.
    pub fn new(config: &Config) -> Plan {
        let mut plan = Plan { source_routes: vec![vec![]; config.sources.len()], ..Plan::default() };
        let mut links: Vec<(usize, String)> = vec![];
        for (spec, r) in config.routes.iter().enumerate() {
            let Some(source) = config.sources.iter().position(|s| s.id == r.source) else { continue };
            for lang in &r.to {
                let idx = plan.routes.len();
                let mut sinks = vec![];
                for sink_id in &r.sinks {
                    let Some(spec) = config.sinks.iter().find(|s| &s.id == sink_id) else { continue };
                    let per_lang = spec.per_language();
                    let id = if per_lang { format!("{}:{lang}", spec.id) } else { spec.id.clone() };
                    let si = match plan.sinks.iter().position(|s| s.id == id) {
                        Some(i) => i,
                        None => {
                            plan.sinks.push(SinkPlan {
                                id,
                                plugin: spec.plugin.clone(),
                                config: spec.config_text(per_lang.then_some(lang.as_str())),
                                routes: vec![],
                                policy: r.on_plugin_failure,
                            });
                            plan.sinks.len() - 1
                        }
                    };
                    plan.sinks[si].routes.push(idx);
                    plan.sinks[si].policy = combine(plan.sinks[si].policy, r.on_plugin_failure);
                    sinks.push(si);
                }
                plan.routes.push(RoutePlan {
                    source,
                    language: lang.clone(),
                    voice: r.voice.clone(),
                    prompt: r.prompt.as_ref().and_then(|p| config.prompts.iter().position(|x| &x.id == p)),
                    sinks,
                    policy: r.on_plugin_failure,
                    via: None,
                    spec,
                });
                match &r.via {
                    Some(v) => links.push((idx, v.clone())),
                    None => plan.source_routes[source].push(idx),
                }
            }
        }
        // Relays are linked once every route exists (a pivot may come later in the file).
        for (idx, via) in links {
            let source = plan.routes[idx].source;
            plan.routes[idx].via = plan.routes.iter().position(|p| p.source == source && p.language == via);
        }
        plan
    }

    /// The routes that take route `r`'s translated output as their input.
    pub fn relays_of(&self, r: usize) -> Vec<usize> {
        (0..self.routes.len()).filter(|&i| self.routes[i].via == Some(r)).collect()
    }

    /// The language route `r`'s input is in: the pivot's target for a relay, else the source's.
    pub fn input_language<'a>(&'a self, config: &'a Config, r: usize) -> &'a str {
        match self.routes[r].via {
            Some(p) => &self.routes[p].language,
            None => &config.sources[self.routes[r].source].language,
        }
    }

    /// The policy for a source: that of its routes, combined.
    pub fn source_policy(&self, source: usize) -> FailurePolicy {
        self.source_routes[source]
            .iter()
            .map(|&r| self.routes[r].policy)
            .reduce(combine)
            .unwrap_or(FailurePolicy::StopRoute)
    }
}

/// The policy for an instance shared by routes that disagree: `exit` if any route asks for
/// it; otherwise `restart` if any does (restarting serves every route); otherwise `stop-route`.
pub fn combine(a: FailurePolicy, b: FailurePolicy) -> FailurePolicy {
    use FailurePolicy::*;
    match (a, b) {
        (Exit, _) | (_, Exit) => Exit,
        (Restart, _) | (_, Restart) => Restart,
        _ => StopRoute,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn expands_languages_and_per_language_sinks() {
        let text = r#"
[[source]]
id = "stage"
plugin = "tolk.wav"
language = "en"
[[route]]
source = "stage"
to = ["floor", "es", "fr"]
sinks = ["rec", "captions"]
on_plugin_failure = "restart"
[[sink]]
id = "rec"
plugin = "tolk.wav"
[sink.config]
path = "out/{lang}.wav"
[[sink]]
id = "captions"
plugin = "tolk.captions"
[sink.config]
jsonl = "out/all.jsonl"
"#;
        let (config, errors) = crate::config::parse_str(text, "t.toml", Path::new("."));
        assert!(errors.is_empty(), "{errors:?}");
        let plan = Plan::new(&config);
        let langs: Vec<&str> = plan.routes.iter().map(|r| r.language.as_str()).collect();
        assert_eq!(langs, ["floor", "es", "fr"]);
        let ids: Vec<&str> = plan.sinks.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["rec:floor", "captions", "rec:es", "rec:fr"]);
        assert!(plan.sinks[2].config.contains("out/es.wav"));
        assert_eq!(plan.sinks[1].routes, [0, 1, 2]);
        assert_eq!(plan.source_routes, [vec![0, 1, 2]]);
        assert_eq!(plan.source_policy(0), FailurePolicy::Restart);
    }

    #[test]
    fn relays_read_their_pivot_wherever_it_is() {
        let text = r#"
[[source]]
id = "stage"
plugin = "tolk.wav"
language = "en"
[[route]]
source = "stage"
via = "es"
to = ["sw", "ca"]
[[route]]
source = "stage"
to = ["floor", "es"]
"#;
        let (config, errors) = crate::config::parse_str(text, "t.toml", Path::new("."));
        assert!(errors.is_empty(), "{errors:?}");
        let plan = Plan::new(&config);
        let vias: Vec<Option<usize>> = plan.routes.iter().map(|r| r.via).collect();
        assert_eq!(vias, [Some(3), Some(3), None, None]);
        assert_eq!(plan.relays_of(3), [0, 1]);
        // Only the pivot and the floor take the source's audio.
        assert_eq!(plan.source_routes, [vec![2, 3]]);
        assert_eq!(plan.input_language(&config, 0), "es");
        assert_eq!(plan.input_language(&config, 3), "en");
    }

    #[test]
    fn combine_prefers_exit_then_restart() {
        use FailurePolicy::*;
        assert_eq!(combine(StopRoute, Exit), Exit);
        assert_eq!(combine(StopRoute, Restart), Restart);
        assert_eq!(combine(StopRoute, StopRoute), StopRoute);
    }
}
