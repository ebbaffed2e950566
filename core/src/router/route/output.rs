//! Session outputs: speech events and commits (what a started response has used), source
//! transcripts, and responses taking their slots in the output order.

use std::{sync::atomic::Ordering::Relaxed, time::Instant};

use tolk_plugin_api::TextRole;

use super::{PER_MS, RouteTask, context::Turn, replay::Commit, slots::Slot};
use crate::realtime::{CloseReason, Input, Output};

/// A new response answers a cut-short one when its input reaches this close to that one's end.
const REDO_SLACK_MS: u64 = 1000;

impl RouteTask {
    /// Handles one output of session `generation`; returns the close reason when it closed.
    pub(super) fn on_output(&mut self, generation: u64, out: Output, old: bool) -> Option<CloseReason> {
        tracing::trace!(route = %self.stats.name, generation, "{out:?}");
        // The budget may have been crossed by the usage just counted (here or on another
        // route): a response the service starts from now on is cancelled, not played.
        self.budget_reached();
        let live = if old { self.old.iter_mut().find(|l| l.generation == generation)? } else { self.live.as_mut()? };
        live.heard = Instant::now();
        match out {
            // The service's positions are trusted no further than the input it was given:
            // any value (a buggy or hostile server's too) lands inside what was written.
            Output::SpeechStarted { audio_start_ms, .. } => {
                live.in_speech = true;
                live.speech_start = live.input_at(audio_start_ms);
            }
            Output::SpeechStopped { audio_end_ms, .. } => {
                live.in_speech = false;
                let end = live.input_at(audio_end_ms);
                let speech_end = end.saturating_sub(self.silence_ms * PER_MS);
                let born = self
                    .pending
                    .iter()
                    .find(|c| c.offset <= speech_end && speech_end < c.offset + c.samples.len() as u64)
                    .map(|c| c.born);
                live.committed_upto = live.committed_upto.max(end.min(live.base + live.written));
                live.commits.push_back(Commit {
                    upto: live.committed_upto,
                    anchor: speech_end,
                    born,
                    item: String::new(),
                    cut: false,
                    from: live.speech_start,
                });
            }
            Output::Committed { item_id } => {
                let written_end = live.base + live.written;
                if let Some(c) = live.commits.back_mut().filter(|c| c.item.is_empty()) {
                    // The item of the VAD stop just seen.
                    c.item = item_id;
                    let (item, from, upto) = (c.item.clone(), c.from, c.upto);
                    live.span(&item, from, upto);
                } else {
                    // A client commit: they are answered in the order they were sent.
                    match live.client_commits.pop_front() {
                        Some(Some((from, at))) => {
                            // A segment cut (its response was requested with the commit).
                            live.committed_upto = at;
                            let born = self
                                .pending
                                .iter()
                                .find(|c| c.offset <= at && at <= c.offset + c.samples.len() as u64)
                                .map(|c| c.born);
                            // Its response answers this item by reference, not whatever
                            // user item is latest on the server when it runs.
                            live.send(Input::RespondTo(item_id.clone()));
                            live.span(&item_id, from, at);
                            live.commits.push_back(Commit {
                                upto: at,
                                anchor: at,
                                born,
                                item: item_id,
                                cut: true,
                                from,
                            });
                        }
                        _ => {
                            // The final commit.
                            self.final_ack = true;
                            if live.in_speech && !self.over_budget {
                                // The speaker was still talking when the input ended: answer it.
                                live.in_speech = false;
                                live.committed_upto = written_end;
                                let born = Some(Instant::now());
                                live.send(Input::RespondTo(item_id.clone()));
                                live.span(&item_id, live.speech_start, written_end);
                                live.commits.push_back(Commit {
                                    upto: written_end,
                                    anchor: written_end,
                                    born,
                                    item: item_id,
                                    cut: false,
                                    from: live.speech_start,
                                });
                            } else {
                                // Only the silence the server keeps for padding: no response,
                                // and whatever its transcript says is not speech.
                                live.padding = Some(item_id.clone());
                                live.send(Input::DeleteItem(item_id));
                            }
                        }
                    }
                }
            }
            Output::Error(e) if live.client_commits.front().is_some_and(Option::is_none) => {
                // "buffer too small": nothing was left to commit at the end.
                tracing::debug!("route {}: final commit: {e}", self.stats.name);
                live.client_commits.pop_front();
                self.final_ack = true;
            }
            Output::SourceTranscriptDelta { item_id, .. } | Output::SourceTranscript { item_id, .. }
                if live.padding.as_deref() == Some(item_id.as_str()) => {}
            Output::SourceTranscriptDelta { delta, item_id } => {
                let (start, end) =
                    live.span_of(&item_id, false).unwrap_or((live.speech_start, live.base + live.written));
                self.text(TextRole::Source, false, self.source_utterances + 1, delta, start / PER_MS, end / PER_MS);
            }
            Output::SourceTranscript { text, item_id } => {
                self.source_utterances += 1;
                let (start, end) = live.span_of(&item_id, true).unwrap_or((live.speech_start, live.committed_upto));
                self.text(TextRole::Source, true, self.source_utterances, text, start / PER_MS, end / PER_MS);
            }
            Output::ResponseStarted { response_id } if self.over_budget => {
                // Past the budget: a response the service had queued is cancelled, not played.
                live.open_responses += 1;
                if live.commits.pop_front().is_some_and(|c| c.cut) {
                    live.cut_unanswered = false;
                }
                live.send(Input::Cancel);
                self.slots.push(Slot {
                    done: true,
                    first_audio: true,
                    ..Slot::new(generation, response_id, self.slots.cursor, 0, None)
                });
            }
            Output::AnnouncementStarted { response_id } => {
                // An operator's announcement: it answers no input (nothing to confirm or replay,
                // not asked for again after a drop) and plays after what is queued.
                live.open_responses += 1;
                if self.over_budget {
                    live.send(Input::Cancel);
                }
                tracing::info!("route {}: announcement {response_id} started", self.stats.name);
                self.slots.push(Slot {
                    done: self.over_budget,
                    first_audio: self.over_budget,
                    ..Slot::new(generation, response_id, self.slots.cursor, 0, None)
                });
                self.advance();
            }
            Output::ResponseStarted { response_id } => {
                live.open_responses += 1;
                let written_end = live.base + live.written;
                let c = live.commits.pop_front().unwrap_or(Commit {
                    upto: written_end,
                    anchor: written_end,
                    born: None,
                    item: String::new(),
                    cut: false,
                    from: written_end,
                });
                if c.cut {
                    // The cut's answer has begun: the input after it may follow.
                    live.cut_unanswered = false;
                }
                let (anchor, speech_end, user_item) = (c.upto, c.born, c.item);
                let start_at = c.anchor;
                // The input up to this commit is used once the response is done (a drop before
                // that replays it).
                let used = anchor.min(live.base + live.written);
                // The answer again to a response cut short by a drop: it covers that input.
                let redo = match self.redo.front() {
                    Some(r) if used + REDO_SLACK_MS * PER_MS >= r.used => self.redo.pop_front(),
                    _ => None,
                };
                let (utterance, skip) = match &redo {
                    Some(r) => {
                        self.stats.responses_resumed.fetch_add(1, Relaxed);
                        tracing::info!(
                            "route {}: utterance {} asked for again after a drop; {:.2} s of it were heard already",
                            self.stats.name,
                            r.utterance,
                            r.heard as f64 / (PER_MS * 1000) as f64
                        );
                        (r.utterance, r.heard)
                    }
                    None => {
                        self.utterances += 1;
                        (self.utterances, 0)
                    }
                };
                self.turns.push_back(Turn {
                    generation,
                    items: vec![user_item].into_iter().filter(|s| !s.is_empty()).collect(),
                });
                self.slots.push(Slot {
                    used,
                    skip,
                    heard_before: skip,
                    ..Slot::new(generation, response_id, start_at, utterance, speech_end)
                });
                self.advance();
                // The new turn is under way: what falls out of `keep_turns` now is deleted while
                // this response plays, so the server has it before it can start the next one.
                self.delete_old_turns(generation);
            }
            Output::Audio { response_id, samples, .. } => {
                if let Some(slot) = self.slots.find_mut(generation, &response_id) {
                    slot.audio.push(samples);
                    self.advance();
                }
            }
            Output::TranscriptDelta { response_id, delta, .. } => {
                if let Some(slot) = self.slots.find_mut(generation, &response_id) {
                    slot.text.push((false, delta));
                    self.advance();
                }
            }
            Output::Transcript { response_id, text, .. } => {
                if let Some(slot) = self.slots.find_mut(generation, &response_id) {
                    slot.text.push((true, text));
                    self.advance();
                }
            }
            Output::ResponseDone { response_id, usage, output_item_ids, status } => {
                live.open_responses = live.open_responses.saturating_sub(1);
                if status != "completed" {
                    tracing::warn!("route {}: response {response_id} ended {status}", self.stats.name);
                }
                if status == "failed" || status == "incomplete" {
                    self.stats.responses_cut_short.fetch_add(1, Relaxed);
                }
                self.account(&usage);
                if let Some(t) = self.turns.iter_mut().rev().find(|t| t.generation == generation) {
                    t.items.extend(output_item_ids);
                }
                if let Some(slot) = self.slots.find_mut(generation, &response_id) {
                    slot.done = true;
                    // Its input has been answered: no replay needed.
                    let used = slot.used;
                    if !old && used > self.confirmed {
                        self.confirmed = used;
                        self.trim_confirmed();
                    }
                }
                if status != "cancelled" {
                    // A response cancelled (past the budget) answered nobody.
                    self.stats.responses.fetch_add(1, Relaxed);
                }
                self.advance();
                self.delete_old_turns(generation);
                if old {
                    let l = self.old.iter().find(|l| l.generation == generation)?;
                    if l.open_responses == 0 && l.commits.is_empty() {
                        return Some(CloseReason::Normal);
                    }
                }
            }
            Output::Error(e) => {
                tracing::warn!("route {}: session error: {e}", self.stats.name);
                // Whatever failed, input must not wait for an answer that may never start.
                live.cut_unanswered = false;
            }
            Output::Closed { reason } => return Some(reason),
            _ => {}
        }
        None
    }
}
