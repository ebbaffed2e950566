//! The input audio buffer: appends, the server VAD turning speech into user items, commits
//! (with input transcription).

use serde_json::json;
use tokio::time::Instant;

use super::{RealtimeSession, append_bounded, items::*, response::*};
use crate::audio::vad::{Vad, VadEvent, VadParams, ms_to_samples, samples_to_ms, take_span, trim_before};
use crate::serve::{
    new_id,
    usage::{AUDIO_IN_TOKENS_PER_S, audio_tokens, text_tokens},
};

impl RealtimeSession {
    pub(super) fn rebuild_vad(&mut self) {
        self.vad = self.cfg.turn_detection.as_ref().map(|t| {
            Vad::new(
                VadParams {
                    threshold: t.threshold,
                    prefix_padding_ms: t.prefix_padding_ms,
                    silence_duration_ms: t.effective_silence_ms(),
                },
                self.total,
            )
        });
        self.speech = None;
    }

    pub(super) fn append(&mut self, samples: &[i16], now: Instant) {
        append_bounded(&mut self.buffer, &mut self.buffer_start, samples);
        self.total += samples.len() as u64;
        let Some(vad) = self.vad.as_mut() else { return };
        let mut events = Vec::new();
        vad.push(samples, &mut events);
        for e in events {
            match e {
                VadEvent::SpeechStarted { start } => {
                    let id = new_id("item_");
                    self.emit(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": samples_to_ms(start), "item_id": id}));
                    self.speech = Some((start, id));
                    let interrupt = self.cfg.turn_detection.as_ref().is_some_and(|t| t.interrupt_response);
                    if interrupt && self.active.is_some() {
                        self.finish("cancelled", Some("turn_detected"), now);
                    }
                }
                VadEvent::SpeechStopped { end } => {
                    let Some((start, id)) = self.speech.take() else { continue };
                    self.emit(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": samples_to_ms(end), "item_id": id}));
                    self.commit(start, end, id.clone());
                    if self.cfg.turn_detection.as_ref().is_some_and(|t| t.create_response) {
                        let p = Pending { overrides: Overrides::default(), answers: Some(id) };
                        if self.active.is_some() {
                            self.queued.push_back(p);
                        } else {
                            self.start_response(p, now);
                        }
                    }
                }
            }
        }
        // In silence, keep only what a later speech start could reach back to.
        if self.speech.is_none() {
            let pad = self.cfg.turn_detection.as_ref().map_or(0, |t| t.prefix_padding_ms as u64);
            let keep_from = self.total.saturating_sub(ms_to_samples(pad + 100));
            trim_before(&mut self.buffer, &mut self.buffer_start, keep_from);
        }
    }

    /// Turns buffer samples `[start, end)` into a user item `id`; drops the buffer up to `end`.
    pub(super) fn commit(&mut self, start: u64, end: u64, id: String) {
        let samples = take_span(&mut self.buffer, &mut self.buffer_start, start, end);
        self.utterances += 1;
        let utterance = self.utterances;
        let transcript_language =
            self.cfg.transcription.as_ref().map(|t| t.language.clone().unwrap_or_else(|| "und".into()));
        let item = Item {
            id: id.clone(),
            kind: ItemKind::Message {
                role: "user".into(),
                parts: vec![Part::InputAudio { samples: samples.clone(), transcript: None }],
            },
            status: "completed",
            utterance: Some(utterance),
        };
        let previous = self.items.last().map(|i| i.id.clone());
        self.emit(json!({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": id}));
        let v = item.to_json(self.dialect, None);
        self.items.push(item);
        self.item_events(previous, v);
        if let Some(lang) = transcript_language {
            let text = self.engine.transcribe(utterance, &samples, &lang);
            for piece in text.split_inclusive(' ') {
                self.emit(json!({"type": "conversation.item.input_audio_transcription.delta", "item_id": id, "content_index": 0, "delta": piece}));
            }
            let audio = audio_tokens(samples.len(), AUDIO_IN_TOKENS_PER_S);
            let out = text_tokens(&text);
            self.emit(json!({
                "type": "conversation.item.input_audio_transcription.completed", "item_id": id, "content_index": 0,
                "transcript": text,
                "usage": {"type": "tokens", "input_tokens": audio, "output_tokens": out, "total_tokens": audio + out,
                          "input_token_details": {"audio_tokens": audio, "text_tokens": 0}},
            }));
            if let Some(Item { kind: ItemKind::Message { parts, .. }, .. }) = self.items.iter_mut().find(|i| i.id == id)
                && let Some(Part::InputAudio { transcript, .. }) = parts.first_mut()
            {
                *transcript = Some(text);
            }
        }
    }
}
