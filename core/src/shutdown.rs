//! One shutdown signal, fanned out (mini-redis shape): Ctrl-C and SIGTERM set it, and every
//! thread and task of a run looks at it.
//!
//! Two levels: the first signal asks for a **graceful** end (sources stop, pending
//! translations finish, sinks drain and close their files); a second one asks to end **now**
//! (sinks are stopped as they are, files still closed valid). Threads poll [`Shutdown::level`]
//! between lane reads; async tasks await [`Shutdown::changed`].

use std::sync::Arc;

use tokio::sync::watch;

/// How far the run is from stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Running.
    Running,
    /// Finish what is in flight, then stop.
    Graceful,
    /// Stop as soon as possible.
    Now,
}

/// A cloneable handle on the run's shutdown signal.
#[derive(Clone)]
pub struct Shutdown {
    /// The current level; only ever increases.
    tx: Arc<watch::Sender<Level>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal at [`Level::Running`].
    pub fn new() -> Shutdown {
        Shutdown { tx: Arc::new(watch::channel(Level::Running).0) }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        *self.tx.borrow()
    }

    /// Raises the level to at least `level` (never lowers it).
    pub fn raise(&self, level: Level) {
        self.tx.send_if_modified(|l| {
            if level > *l {
                *l = level;
                true
            } else {
                false
            }
        });
    }

    /// Waits until the level is at least `level`.
    pub async fn reached(&self, level: Level) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|l| *l >= level).await;
    }

    /// Listens for Ctrl-C and SIGTERM on the current tokio runtime: the first raises the
    /// level to [`Level::Graceful`], the next to [`Level::Now`].
    pub fn listen_for_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                #[cfg(unix)]
                let term_recv = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let term_recv = std::future::pending::<()>();
                tokio::select! {
                    r = tokio::signal::ctrl_c() => { if r.is_err() { return; } }
                    _ = term_recv => {}
                }
                let next = if this.level() == Level::Running { Level::Graceful } else { Level::Now };
                if next == Level::Graceful {
                    tracing::warn!("stopping: finishing pending translations (press Ctrl-C again to stop now)");
                } else {
                    tracing::warn!("stopping now");
                }
                this.raise(next);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_only_rises() {
        let s = Shutdown::new();
        assert_eq!(s.level(), Level::Running);
        s.raise(Level::Now);
        s.raise(Level::Graceful);
        assert_eq!(s.level(), Level::Now);
    }
}
