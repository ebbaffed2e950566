//! Delivery of the route's output: audio to the sink lanes and the relay routes, text to the
//! text sinks.

use std::sync::Arc;

use tokio::sync::mpsc;
use tolk_plugin_api::TextRole;

use super::RouteTask;
use crate::router::{Chunk, RATE, RouteIn, sink_lane::TextItem};

impl RouteTask {
    pub(super) fn deliver(&mut self, chunk: &Chunk) {
        if self.lossless {
            let (shared, r) = (&self.shared, self.r);
            tokio::task::block_in_place(|| shared.deliver_audio(r, chunk));
        } else {
            self.shared.deliver_audio(self.r, chunk);
        }
        if !self.relays.is_empty() && !self.shared.is_stopped(self.r) {
            self.relay(chunk);
        }
    }

    /// Feeds the output to the relay routes as their input, on this route's clock: the
    /// silence between translations (which live sinks never get) is filled in, so a relay's
    /// speech detector hears the pauses and its input has no gaps. Offline the relays are
    /// waited for; live, a relay that is a minute behind loses input (counted as its gap).
    pub(super) fn relay(&mut self, chunk: &Chunk) {
        const FILL: u64 = RATE as u64;
        let send = |c: Chunk, relays: &mut Vec<mpsc::Sender<RouteIn>>, lossless: bool| {
            relays.retain(|tx| {
                let item = RouteIn::Audio(c.clone());
                if lossless {
                    tokio::task::block_in_place(|| tx.blocking_send(item)).is_ok()
                } else {
                    !matches!(tx.try_send(item), Err(mpsc::error::TrySendError::Closed(_)))
                }
            });
        };
        while self.relay_fed < chunk.offset {
            let n = (chunk.offset - self.relay_fed).min(FILL);
            let silence =
                Chunk { offset: self.relay_fed, samples: Arc::from(vec![0i16; n as usize]), born: chunk.born };
            send(silence, &mut self.relays, self.lossless);
            self.relay_fed += n;
        }
        let end = chunk.offset + chunk.samples.len() as u64;
        if end > self.relay_fed {
            send(chunk.clone(), &mut self.relays, self.lossless);
            self.relay_fed = end;
        }
    }

    pub(super) fn text(
        &self,
        role: TextRole,
        is_final: bool,
        utterance_id: u64,
        text: String,
        start_ms: u64,
        end_ms: u64,
    ) {
        let language: Arc<str> = match role {
            TextRole::Source => Arc::from(self.source_language.as_str()),
            TextRole::Translation => Arc::clone(&self.target_language),
        };
        let item = TextItem { role, is_final, utterance_id, language, text, start_ms, end_ms };
        if self.lossless {
            tokio::task::block_in_place(|| self.shared.deliver_text(self.r, item));
        } else {
            self.shared.deliver_text(self.r, item);
        }
    }
}
