//! The thread that owns a prompt provider instance (`tolk-prompt-<id>`): route tasks ask it for
//! their session instructions over a channel and await the answer, so plugin code never runs
//! inside an async task. Under `restart`, a failed instance is recreated for the next call.

use std::sync::Arc;

use tokio::sync::oneshot;
use tolk_plugin_api::{PluginError, PluginKind, PromptRequest};

use super::{Control, MAX_RESTARTS, Shared, plan::combine, what};
use crate::{config::FailurePolicy, plugin_host::PromptInstance};

/// A request for one session's instructions.
pub(crate) struct PromptCall {
    /// `stage→es`.
    pub route_id: String,
    /// Source language.
    pub source_language: String,
    /// Target language.
    pub target_language: String,
    /// Where the answer goes: (instructions, transcription hint).
    pub reply: oneshot::Sender<Result<(String, String), PluginError>>,
}

/// Starts the thread for prompt instance `idx`; returns the channel to call it.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    idx: usize,
    mut instance: PromptInstance,
) -> crossbeam_channel::Sender<PromptCall> {
    let (tx, rx) = crossbeam_channel::unbounded::<PromptCall>();
    let spec = shared.config.prompts[idx].clone();
    // The policy of the routes that use this provider.
    let policy = shared
        .plan
        .routes
        .iter()
        .filter(|r| r.prompt == Some(idx))
        .map(|r| r.policy)
        .reduce(combine)
        .unwrap_or(FailurePolicy::StopRoute);
    std::thread::Builder::new()
        .name(format!("tolk-prompt-{}", spec.id))
        .spawn(move || {
            let mut restarts = 0;
            for call in rx {
                let req = PromptRequest::new(&call.route_id, &call.source_language, &call.target_language);
                let answer =
                    instance.prompt(req).map(|p| (p.instructions().to_string(), p.transcription_hint().to_string()));
                if let Err(e) = &answer
                    && policy == FailurePolicy::Restart
                    && restarts < MAX_RESTARTS
                {
                    restarts += 1;
                    tracing::error!("{} failed: {e}; restarting it", what(PluginKind::Prompt, &spec.id));
                    let _ = shared
                        .control
                        .send(Control::Restarted { what: what(PluginKind::Prompt, &spec.id), error: e.to_string() });
                    match shared.registry.create_prompt(
                        &spec.plugin,
                        &spec.config_text(None),
                        shared.host(&spec.id, &spec.plugin),
                    ) {
                        Ok(i) => instance = i,
                        Err(e) => tracing::error!("{}: cannot recreate: {e}", what(PluginKind::Prompt, &spec.id)),
                    }
                }
                let _ = call.reply.send(answer);
            }
        })
        .expect("spawn a prompt thread");
    tx
}
