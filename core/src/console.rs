//! The commands' output on stdout, through [`outln!`](crate::outln): a stdout that was closed
//! (`tolk check x.toml | head -1`) ends the printing quietly instead of panicking with "failed
//! printing to stdout: Broken pipe"; the command itself carries on and keeps its exit status.
//! Any other write error (a full disk under `> file`) is said once on stderr and makes the
//! exit status 1, so output is never lost without a word.
//!
//! Messages on stderr go through [`errln!`](crate::errln), which likewise never panics: a
//! closed stderr (`tolk check x.toml 2>&1 | head -0`) leaves nowhere to say anything, and the
//! exit status still tells.

use std::{
    fmt,
    io::{self, Write},
    sync::atomic::{AtomicBool, Ordering::Relaxed},
};

/// Nothing more is printed: stdout is closed, or failed.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// A write failed for another reason than a closed pipe.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Prints `args` and a newline on stdout; false when stdout is closed or failed.
pub fn line(args: fmt::Arguments<'_>) -> bool {
    if CLOSED.load(Relaxed) {
        return false;
    }
    let mut out = io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    match r {
        Ok(()) => true,
        Err(e) => {
            CLOSED.store(true, Relaxed);
            if e.kind() != io::ErrorKind::BrokenPipe {
                FAILED.store(true, Relaxed);
                err_line(format_args!("error: cannot write to stdout: {e}"));
            }
            false
        }
    }
}

/// True when a write to stdout failed for another reason than a closed pipe.
pub fn failed() -> bool {
    FAILED.load(Relaxed)
}

/// `println!` for command output: see the [module docs](crate::console).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        $crate::console::line(format_args!($($arg)*));
    }};
}

/// Prints `args` and a newline on stderr, ignoring a closed or failed stderr.
pub fn err_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` for command messages: see the [module docs](crate::console).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        $crate::console::err_line(format_args!($($arg)*));
    }};
}
