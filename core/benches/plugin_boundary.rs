//! Cost of one call across the plugin boundary, against an in-process trait-object call doing
//! the same nothing (the baseline, measured in the same run).
//!
//! Needs the release plugins: `cargo build --release --workspace && cargo bench -p tolk-core
//! --bench plugin_boundary`.

use std::{hint::black_box, path::PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use tolk_core::plugin_host::{HostServices, Registry, SearchPath, discover::Origin};
use tolk_plugin_api::{AudioBlock, AudioFormat, PluginError, Samples, TextEvent, TextRole};

trait LocalSink {
    fn on_audio(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError>;
}

struct Nothing;

impl LocalSink for Nothing {
    fn on_audio(&mut self, block: &AudioBlock<'_>) -> Result<(), PluginError> {
        black_box(block);
        Ok(())
    }
}

fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|p| p.parent()).unwrap().to_path_buf()
}

fn bench(c: &mut Criterion) {
    let mut search = SearchPath::default();
    search.dirs.push((plugin_dir(), Origin::Default));
    let reg = Registry::discover(&search);
    let host = || HostServices {
        instance_id: "bench".into(),
        plugin_id: "tolk.captions".into(),
        config_dir: std::env::temp_dir(),
    };
    // The captions sink takes no audio: its on_audio is the trait's default no-op, so what is
    // measured is the boundary itself (vtable call, panic guard, poison check).
    let mut sink = reg
        .create_sink("tolk.captions", "jsonl = \"/dev/null\"", host())
        .expect("release plugins missing: run `cargo build --release --workspace` first");
    sink.start().unwrap();
    let samples = vec![0i16; 480];
    let block = AudioBlock::new(AudioFormat::SESSION, Samples::I16(&samples), 0, "es");

    let mut g = c.benchmark_group("boundary");
    g.bench_function("baseline: in-process dyn call", |b| {
        let mut local: Box<dyn LocalSink> = Box::new(Nothing);
        b.iter(|| local.on_audio(black_box(&block)).unwrap())
    });
    g.bench_function("plugin on_audio (20 ms block)", |b| b.iter(|| sink.on_audio(black_box(block)).unwrap()));
    let event = TextEvent::new(TextRole::Source, false, 1, "en", "hello", 0, 10);
    g.bench_function("plugin on_text (delta, filtered out)", |b| b.iter(|| sink.on_text(black_box(event)).unwrap()));
    g.finish();
    sink.stop().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
