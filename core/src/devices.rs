//! `tolk devices`: list the audio devices that device plugins can open, and a live level meter
//! for checking a microphone before an event.
//!
//! The one decision to know: **core never links an audio library.** Devices are listed by the
//! plugins that open them, through the optional `tolk.devices/1` capability of the plugin ABI
//! (`tolk_plugin_api::device`): every source plugin that declares it lists input devices,
//! every sink plugin output devices. The meter creates an ordinary instance of such a source
//! (`tolk.mic` unless `--plugin` names another) with `device = NAME` and measures what it
//! writes, through a writer of its own — no router, no session.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RStr},
};
use tolk_plugin_api::{
    AudioBlock, PluginError, PluginKind, Samples,
    device::{CAPABILITY, DeviceInfo},
    ffi::{FfiWriter, FfiWriter_TO},
};

use crate::{
    exit,
    plugin_host::{HostServices, PluginEntry, Registry, SearchPath},
    shutdown::{Level, Shutdown},
};

/// What `tolk devices` was asked for.
#[derive(Debug, Clone, Default)]
pub struct DevicesArgs {
    /// Extra plugin directories (searched first).
    pub paths: Vec<PathBuf>,
    /// Show a level meter for this input device instead of the list.
    pub meter: Option<String>,
    /// Stop the meter after this many seconds (0 = until Ctrl-C).
    pub seconds: f64,
    /// The source plugin the meter uses (default: `tolk.mic`).
    pub plugin: Option<String>,
}

/// The devices one plugin lists.
pub struct PluginDevices {
    /// The plugin's id.
    pub plugin: String,
    /// Source (input devices) or sink (output devices).
    pub kind: PluginKind,
    /// Its devices, or why it could not list them.
    pub devices: Result<Vec<DeviceInfo>, PluginError>,
}

/// Asks every plugin with the device capability for its devices: sources first.
pub fn collect(reg: &Registry) -> Vec<PluginDevices> {
    let mut out = Vec::new();
    for kind in [PluginKind::Source, PluginKind::Sink] {
        for ((k, id), entry) in &reg.plugins {
            if *k != kind || !entry.descriptor.capabilities().any(|c| c == CAPABILITY) {
                continue;
            }
            out.push(PluginDevices { plugin: id.clone(), kind, devices: list(entry, kind, id) });
        }
    }
    out
}

fn list(entry: &PluginEntry, kind: PluginKind, id: &str) -> Result<Vec<DeviceInfo>, PluginError> {
    // NOTE: the root-module field is optional (appended after the last prefix field), so a
    // library built before it existed simply has no devices to offer.
    let Some(devices) = entry.library.module.devices() else {
        return Err(PluginError::unsupported(format!(
            "{} was built without device listing",
            entry.library.path.display()
        )));
    };
    devices(kind, RStr::from_str(id)).into_result().map(|v| v.into_vec())
}

/// Runs `tolk devices`; returns the exit status.
pub fn run(args: &DevicesArgs) -> u8 {
    // Listen first, so a SIGTERM at any point ends the command through the shared path.
    let stop = Shutdown::on_signals();
    for p in &args.paths {
        if !p.is_dir() {
            crate::errln!("error: --path {}: not a directory", p.display());
            return exit::USAGE;
        }
    }
    let mut search = SearchPath::new(&args.paths);
    search.dirs.retain(|(d, _)| d.is_dir());
    let reg = Registry::discover_probed(&search);
    for e in &reg.errors {
        crate::errln!("warning: {e}");
    }
    match &args.meter {
        Some(name) => meter(&reg, args, name, &stop),
        None => print_list(&reg),
    }
}

fn print_list(reg: &Registry) -> u8 {
    let all = collect(reg);
    if all.is_empty() {
        crate::errln!(
            "error: no installed plugin lists devices (capability {CAPABILITY}); `tolk plugins` shows what is installed"
        );
        return exit::RUNTIME;
    }
    let mut failed = false;
    for p in &all {
        let what = if p.kind == PluginKind::Source { "input" } else { "output" };
        match &p.devices {
            Ok(list) if list.is_empty() => crate::outln!("{what} devices ({}): none", p.plugin),
            Ok(list) => {
                crate::outln!("{what} devices ({}):", p.plugin);
                for d in list {
                    crate::outln!("  {} {d}", if d.is_default() { "*" } else { " " });
                }
            }
            Err(e) => {
                failed = true;
                crate::errln!("error: {}: cannot list {what} devices: {e}", p.plugin);
            }
        }
    }
    crate::outln!("(* = default; use the name, a unique part of it, or \"default\" in `device = \"…\"`)");
    if failed { exit::RUNTIME } else { exit::OK }
}

/// Level statistics over a window and over the whole run, fed by the meter's writer.
#[derive(Debug, Default, Clone, Copy)]
pub struct Levels {
    /// Peak of the current window (absolute, full scale 1.0).
    pub window_peak: f32,
    /// Sum of squares and count of the current window.
    pub window_sq: f64,
    /// Samples in the current window.
    pub window_n: u64,
    /// Peak of the whole run.
    pub peak: f32,
    /// Sum of squares and count over the whole run.
    pub sq: f64,
    /// Samples over the whole run.
    pub n: u64,
}

impl Levels {
    /// Adds samples (f32 full scale 1.0).
    pub fn add(&mut self, samples: impl Iterator<Item = f32>) {
        for s in samples {
            let a = if s.is_finite() { s.abs() } else { 0.0 };
            self.window_peak = self.window_peak.max(a);
            self.peak = self.peak.max(a);
            let q = f64::from(a) * f64::from(a);
            self.window_sq += q;
            self.sq += q;
            self.window_n += 1;
            self.n += 1;
        }
    }

    /// (peak, rms) of the window in dBFS, and starts a new window.
    pub fn take_window(&mut self) -> (f32, f32) {
        let out = (dbfs(self.window_peak), dbfs(rms(self.window_sq, self.window_n)));
        self.window_peak = 0.0;
        self.window_sq = 0.0;
        self.window_n = 0;
        out
    }

    /// (peak, rms) of the whole run in dBFS.
    pub fn total(&self) -> (f32, f32) {
        (dbfs(self.peak), dbfs(rms(self.sq, self.n)))
    }
}

fn rms(sq: f64, n: u64) -> f32 {
    if n == 0 { 0.0 } else { (sq / n as f64).sqrt() as f32 }
}

/// A level in dBFS, floored at -120.
pub fn dbfs(level: f32) -> f32 {
    if level <= 1e-6 { -120.0 } else { (20.0 * level.log10()).max(-120.0) }
}

/// A text bar for `db` between -60 and 0 dBFS, `width` cells.
pub fn bar(db: f32, width: usize) -> String {
    let filled = (((db + 60.0) / 60.0).clamp(0.0, 1.0) * width as f32).round() as usize;
    format!("{}{}", "#".repeat(filled), "-".repeat(width - filled))
}

/// The writer the meter hands the source: it measures and forgets.
#[derive(Clone)]
struct MeterWriter {
    levels: Arc<Mutex<Levels>>,
    closed: Arc<AtomicBool>,
    failed: Arc<Mutex<Option<PluginError>>>,
    channels: usize,
}

impl FfiWriter for MeterWriter {
    fn write(&self, block: AudioBlock<'_>) -> u64 {
        if self.closed.load(Ordering::Acquire) {
            return 0;
        }
        let samples = block.samples();
        let mut l = self.levels.lock().unwrap_or_else(|p| p.into_inner());
        match samples {
            Samples::F32(s) => l.add(s.iter().copied()),
            Samples::I16(s) => l.add(s.iter().map(|&x| f32::from(x) / 32768.0)),
        }
        (samples.len() / self.channels.max(1)) as u64
    }
    fn free_frames(&self) -> u64 {
        if self.closed.load(Ordering::Acquire) { 0 } else { u64::from(u32::MAX) }
    }
    fn wait_writable(&self, _timeout_ms: u64) -> bool {
        !self.closed.load(Ordering::Acquire)
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
    fn end_of_stream(&self) {
        self.closed.store(true, Ordering::Release);
    }
    fn fail(&self, error: PluginError) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
        self.closed.store(true, Ordering::Release);
    }
}

fn meter(reg: &Registry, args: &DevicesArgs, name: &str, stop: &Shutdown) -> u8 {
    let plugin = args.plugin.clone().unwrap_or_else(|| "tolk.mic".into());
    let Some(entry) = reg.get(PluginKind::Source, &plugin) else {
        crate::errln!("error: --plugin: no source plugin with id \"{plugin}\"; `tolk plugins` lists what is installed");
        return exit::USAGE;
    };
    if !entry.descriptor.capabilities().any(|c| c == CAPABILITY) {
        crate::errln!("error: --plugin: {plugin} does not open devices (no capability {CAPABILITY})");
        return exit::USAGE;
    }
    let config = format!("device = {}\n", toml::Value::String(name.to_string()));
    let host = HostServices {
        instance_id: "meter".into(),
        plugin_id: plugin.clone(),
        config_dir: std::env::current_dir().unwrap_or_default(),
    };
    let mut source = match reg.create_source(&plugin, &config, host) {
        Ok(s) => s,
        Err(e) => {
            crate::errln!("error: {plugin}: {e}");
            return exit::USAGE;
        }
    };
    let format = match source.format() {
        Ok(f) => f,
        Err(e) => {
            crate::errln!("error: {plugin}: {e}");
            return exit::RUNTIME;
        }
    };
    let writer = MeterWriter {
        levels: Arc::default(),
        closed: Arc::default(),
        failed: Arc::default(),
        channels: usize::from(format.channels),
    };
    if let Err(e) = source.start(FfiWriter_TO::from_ptr(RArc::new(writer.clone()), TD_Opaque)) {
        crate::errln!("error: {plugin}: {e}");
        return exit::RUNTIME;
    }
    crate::errln!("metering {name:?} ({format}); Ctrl-C stops");
    let started = Instant::now();
    let limit = (args.seconds > 0.0).then(|| Duration::from_secs_f64(args.seconds));
    let mut err = std::io::stderr();
    while stop.level() == Level::Running
        && !writer.closed.load(Ordering::Acquire)
        && limit.is_none_or(|l| started.elapsed() < l)
    {
        std::thread::sleep(Duration::from_millis(100));
        let (peak, rms) = writer.levels.lock().unwrap_or_else(|p| p.into_inner()).take_window();
        let _ = write!(err, "\r[{}] peak {peak:6.1} dBFS  rms {rms:6.1} dBFS ", bar(peak, 40));
        let _ = err.flush();
    }
    let _ = writeln!(err);
    writer.closed.store(true, Ordering::Release);
    let stopped = source.stop();
    let levels = *writer.levels.lock().unwrap_or_else(|p| p.into_inner());
    let (peak, rms) = levels.total();
    let secs = levels.n as f64 / f64::from(format.sample_rate.max(1)) / f64::from(format.channels.max(1));
    crate::outln!("{name}: peak {peak:.1} dBFS, rms {rms:.1} dBFS over {secs:.1} s");
    if let Some(e) = writer.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        crate::errln!("error: {plugin}: {e}");
        return exit::RUNTIME;
    }
    if let Err(e) = stopped {
        crate::errln!("error: {plugin}: {e}");
        return exit::RUNTIME;
    }
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_bars() {
        let mut l = Levels::default();
        l.add([0.5f32, -0.5, 0.5, -0.5].into_iter());
        let (peak, rms) = l.take_window();
        assert!((peak + 6.02).abs() < 0.01 && (rms + 6.02).abs() < 0.01, "{peak} {rms}");
        assert_eq!(l.take_window(), (-120.0, -120.0));
        l.add([f32::NAN, 1.0].into_iter());
        assert_eq!(l.total().0, 0.0);
        assert_eq!(bar(-30.0, 10), "#####-----");
        assert_eq!(bar(-90.0, 4), "----");
        assert_eq!(bar(3.0, 4), "####");
    }
}
