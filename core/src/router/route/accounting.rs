//! Cost: each response's usage is priced and added to the route's counters.

use std::sync::atomic::Ordering::Relaxed;

use super::RouteTask;
use crate::realtime::Usage;
use crate::router::cost::Tokens;

impl RouteTask {
    pub(super) fn account(&self, usage: &Usage) {
        let t = Tokens::from(usage);
        let cost = t.cost(&self.settings().prices);
        self.stats.cost_micro_usd.fetch_add((cost * 1e6).round() as u64, Relaxed);
        let input = usage.input_tokens.max(t.input());
        self.stats.last_input_tokens.store(input, Relaxed);
        self.stats.max_input_tokens.fetch_max(input, Relaxed);
        for (i, n) in
            [t.audio_in, t.cached_audio_in.saturating_add(t.cached_text_in), t.text_in, t.audio_out, t.text_out]
                .into_iter()
                .enumerate()
        {
            self.stats.tokens[i].fetch_add(n, Relaxed);
        }
        // The budget holds at once, not at the control loop's next look: a run read faster
        // than real time answers many turns in one of its ticks.
        if let Some(budget) = self.settings().budget_usd
            && self.shared.route_stats.iter().map(|r| r.cost_usd()).sum::<f64>() >= budget
        {
            self.shared.over_budget.store(true, Relaxed);
        }
    }
}
