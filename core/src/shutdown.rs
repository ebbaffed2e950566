//! One shutdown signal, fanned out (mini-redis shape): Ctrl-C and SIGTERM set it, and every
//! thread and task of a command looks at it. [`Shutdown::on_signals`] is the one place where
//! tolk handles signals, for every command (`run`, `serve`, `devices`).
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

    /// The process's shutdown signal, raised by Ctrl-C and SIGTERM: the one shutdown path
    /// of every command (`run`, `serve`, `devices`). The first call starts the listener on a
    /// thread of its own (a one-thread tokio runtime confined to signals, so it works whether
    /// or not the caller has a runtime); every call returns the same signal. The first signal
    /// raises it to [`Level::Graceful`], the next to [`Level::Now`].
    pub fn on_signals() -> Shutdown {
        static PROCESS: std::sync::OnceLock<Shutdown> = std::sync::OnceLock::new();
        PROCESS
            .get_or_init(|| {
                let shutdown = Shutdown::new();
                let this = shutdown.clone();
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new().name("tolk-signals".into()).spawn(move || {
                    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt.block_on(listen(this, ready_tx)),
                        Err(e) => tracing::warn!("cannot listen for Ctrl-C and SIGTERM: {e}"),
                    }
                });
                // Wait until the handlers are installed, so that a signal sent right after
                // start-up is never lost to the default action.
                if spawned.is_ok() {
                    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(2));
                }
                shutdown
            })
            .clone()
    }
}

/// The next delivery of `signal`; never, when it could not be registered.
#[cfg(unix)]
async fn recv(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

async fn listen(this: Shutdown, ready: std::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let _ = ready.send(());
    loop {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = recv(term.as_mut()) => {}
                _ = recv(int.as_mut()) => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        let next = if this.level() == Level::Running { Level::Graceful } else { Level::Now };
        if next == Level::Graceful {
            tracing::warn!("stopping: finishing what is in flight (press Ctrl-C again to stop now)");
        } else {
            tracing::warn!("stopping now");
        }
        this.raise(next);
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
