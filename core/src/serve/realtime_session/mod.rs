//! One realtime session (GA or beta dialect): the per-connection state machine.
//!
//! It owns the session config, the conversation, the input buffer with its VAD, and the
//! running response. It does no I/O: the connection loop in `serve/mod.rs` feeds it client events
//! ([`RealtimeSession::on_event`]) and clock ticks ([`RealtimeSession::on_tick`]) and sends
//! whatever lands in [`RealtimeSession::out`] (events without `event_id`; the loop stamps them).
//!
//! A response is a little state machine of its own (`Active`): it starts after the fault
//! delay, sends the opening events, then pulls one engine chunk per step, paced so that audio
//! leaves at `speed` times real time, and ends with the done events. Client events are handled
//! between steps, so a cancel or a barge-in lands mid-response, as on the real service. The
//! item being produced may be truncated mid-response too (clients send the truncate before the
//! cancel on an interruption); deleting it still needs the response to end first.
//!
//! Files by job: `mod.rs` (the state, events out), `events` (client event dispatch and
//! validation), `items` (the conversation), `input` (the input audio buffer and its VAD),
//! `response` (response lifecycle, pacing, usage).

mod events;
mod input;
mod items;
mod response;

use std::{collections::VecDeque, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::time::Instant;

use self::{items::*, response::*};
use super::{
    engine::Engine,
    new_id,
    protocol::{ApiError, Dialect, SessionConfig},
};
use crate::audio::vad::Vad;

pub use events::unknown_event;

/// A realtime session's state; see the module docs.
pub struct RealtimeSession {
    dialect: Dialect,
    cfg: SessionConfig,
    conversation_id: String,
    engine: Arc<dyn Engine>,
    /// Real-time factor of response audio; infinite = unpaced.
    speed: f64,
    /// Injected delay before each response (faults).
    pub delay: Duration,
    items: Vec<Item>,
    /// Uncommitted input audio (24 kHz) and the absolute position of its first sample.
    buffer: Vec<i16>,
    buffer_start: u64,
    /// Samples received since the session started.
    total: u64,
    vad: Option<Vad>,
    /// Speech in progress: its start and the id its item will get.
    speech: Option<(u64, String)>,
    utterances: u64,
    active: Option<Active>,
    queued: VecDeque<Pending>,
    audio_was_output: bool,
    tokens_remaining: u64,
    /// Events to send, oldest first, without `event_id`.
    pub out: VecDeque<Value>,
}

pub(super) const RATE_LIMIT_TOKENS: u64 = 40_000;
/// The longest uncommitted input kept (older audio is dropped): 10 minutes.
pub const MAX_BUFFER_MS: u64 = 10 * 60 * 1000;

/// Appends `samples` to an uncommitted input `buffer` that starts at stream sample `start`,
/// keeping only its newest [`MAX_BUFFER_MS`] (endless speech must not grow memory).
pub(crate) fn append_bounded(buffer: &mut Vec<i16>, start: &mut u64, samples: &[i16]) {
    buffer.extend_from_slice(samples);
    let max = crate::audio::vad::ms_to_samples(MAX_BUFFER_MS) as usize;
    if buffer.len() > max {
        let drop = buffer.len() - max;
        buffer.drain(..drop);
        *start += drop as u64;
    }
}

impl RealtimeSession {
    /// A new session; `session.created` and `conversation.created` are queued at once.
    pub fn new(
        dialect: Dialect,
        model: String,
        expires_at: u64,
        engine: Arc<dyn Engine>,
        speed: f64,
    ) -> RealtimeSession {
        let cfg = SessionConfig::new(dialect, new_id("sess_"), model, expires_at);
        let mut s = RealtimeSession {
            dialect,
            conversation_id: new_id("conv_"),
            engine,
            speed,
            delay: Duration::ZERO,
            items: Vec::new(),
            buffer: Vec::new(),
            buffer_start: 0,
            total: 0,
            vad: None,
            speech: None,
            utterances: 0,
            active: None,
            queued: VecDeque::new(),
            audio_was_output: false,
            tokens_remaining: RATE_LIMIT_TOKENS,
            out: VecDeque::new(),
            cfg,
        };
        s.rebuild_vad();
        s.emit(json!({"type": "session.created", "session": s.cfg.to_json(dialect)}));
        s.emit(json!({"type": "conversation.created", "conversation": {"id": s.conversation_id, "object": "realtime.conversation"}}));
        s
    }

    /// Moves `expires_at` (fault injection) and announces it with a `session.updated`.
    pub fn set_expires_at(&mut self, t: u64) {
        self.cfg.expires_at = t;
        let s = self.cfg.to_json(self.dialect);
        self.emit(json!({"type": "session.updated", "session": s}));
    }

    fn emit(&mut self, v: Value) {
        self.out.push_back(v);
    }

    fn error(&mut self, e: ApiError, event_id: Option<&str>) {
        self.emit(e.to_event(event_id));
    }

    /// When the session next needs [`RealtimeSession::on_tick`].
    pub fn deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.next_at)
    }
}
