//! WAV in, WAV out through the real plugins and the host's lane: bit-exact at the same format.

use std::time::Duration;

use tolk_core::{
    plugin_host::{HostServices, Registry, SearchPath},
    router::lane::{self, LaneEvent},
};
use tolk_plugin_api::AudioBlock;
use tolk_tests::{read_wav_i16, write_wav_i16};

fn host(id: &str, dir: &std::path::Path) -> HostServices {
    HostServices { instance_id: id.into(), plugin_id: "tolk.wav".into(), config_dir: dir.to_path_buf() }
}

#[test]
fn wav_source_to_wav_sink_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 3.3 s of a deterministic, full-range signal (including the extremes).
    let input: Vec<i16> = (0..79_213i32)
        .map(|i| match i % 997 {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => ((i as f32 * 0.0731).sin() * 20_000.0 + (i as f32 * 0.0013).cos() * 9_000.0) as i16,
        })
        .collect();
    write_wav_i16(&dir.path().join("in.wav"), 24_000, 1, &input);

    let reg = Registry::discover(&SearchPath::new(&[]));
    let mut source =
        reg.create_source("tolk.wav", "path = \"in.wav\"\nrealtime = false", host("in", dir.path())).unwrap();
    let mut sink = reg.create_sink("tolk.wav", "path = \"out.wav\"", host("out", dir.path())).unwrap();
    let src_fmt = source.format().unwrap();
    let sink_fmt = sink.format().unwrap().unwrap();
    assert_eq!(src_fmt, sink_fmt, "same format: no conversion on the way");

    let (writer, reader) = lane::lane(src_fmt, Duration::from_millis(200), lane::Policy::Backpressure);
    source.start(writer.to_ffi()).unwrap();
    sink.start().unwrap();
    let mut expected_offset = 0;
    loop {
        match reader.recv_timeout(Duration::from_secs(10)).expect("the source stalled") {
            LaneEvent::Audio(b) => {
                assert_eq!(b.frame_offset, expected_offset);
                let samples = b.samples.as_samples();
                expected_offset += samples.len() as u64;
                sink.on_audio(AudioBlock::new(sink_fmt, samples, b.frame_offset, "en")).unwrap();
            }
            LaneEvent::End => break,
            LaneEvent::Failed(e) => panic!("source failed: {e}"),
        }
    }
    source.stop().unwrap();
    sink.stop().unwrap();
    assert_eq!(reader.dropped_frames(), 0);
    let (spec, output) = read_wav_i16(&dir.path().join("out.wav"));
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (24_000, 1, 16));
    assert_eq!(output.len(), input.len());
    assert!(output == input, "samples differ");
}
