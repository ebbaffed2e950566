//! Flat context: turns older than `keep_turns` are deleted from the session's conversation.

use std::sync::atomic::Ordering::Relaxed;

use super::RouteTask;
use crate::realtime::Input;

/// A finished turn's items, for deletion.
pub(super) struct Turn {
    pub(super) generation: u64,
    pub(super) items: Vec<String>,
}

impl RouteTask {
    /// Deletes turns beyond `keep_turns` from session `generation`'s conversation.
    pub(super) fn delete_old_turns(&mut self, generation: u64) {
        let keep = self.settings().keep_turns;
        let mine = self.turns.iter().filter(|t| t.generation == generation).count();
        if mine <= keep {
            // Turns of sessions no longer open are simply forgotten.
            self.turns.retain(|t| {
                t.generation == generation || self.live.as_ref().is_some_and(|l| l.generation == t.generation)
            });
            return;
        }
        let mut deletions = vec![];
        let mut excess = mine - keep;
        let mut i = 0;
        while excess > 0 && i < self.turns.len() {
            if self.turns[i].generation == generation {
                deletions.extend(self.turns.remove(i).expect("present").items);
                excess -= 1;
            } else {
                i += 1;
            }
        }
        let live = match self.live.as_mut().filter(|l| l.generation == generation) {
            Some(l) => l,
            None => match self.old.iter_mut().find(|l| l.generation == generation) {
                Some(l) => l,
                None => return,
            },
        };
        for item in deletions {
            live.send(Input::DeleteItem(item));
            self.stats.items_deleted.fetch_add(1, Relaxed);
        }
    }
}
