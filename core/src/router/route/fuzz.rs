//! Property test: the route stage under arbitrary session outputs — what a buggy or hostile
//! server can make the client report (positions and token counts are any `u64` the JSON
//! holds; ids, orders and repeats are anything), interleaved with input and ticks. The route
//! must never panic (a debug build checks every overflow) and its offsets must stay within
//! the input it was given. The client itself is fuzzed with arbitrary frames in
//! `realtime::state_machine`.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use proptest::prelude::*;

use super::RouteTask;
use crate::{
    config::parse_str,
    plugin_host::Registry,
    realtime::{self, ErrorClass, Output, ServerError, Usage},
    router::{
        Chunk, EngineTarget, Shared, gate, metrics::RouteStats, metrics::SinkStats, plan::Plan, sink_lane::SinkLane,
    },
    shutdown::Shutdown,
};

const CONFIG: &str = r#"
[engine]
provider = "local"
[run]
delivery = "lossless"
max_segment_ms = 2000
[[source]]
id = "stage"
plugin = "tolk.wav"
language = "en"
[source.config]
path = "in.wav"
[[route]]
source = "stage"
to = ["es"]
sinks = ["rec"]
[[sink]]
id = "rec"
plugin = "tolk.wav"
[sink.config]
path = "out.wav"
"#;

fn task() -> RouteTask {
    let (config, errors) = parse_str(CONFIG, "fuzz.toml", Path::new("."));
    assert!(errors.is_empty(), "{errors:?}");
    let config = Arc::new(config);
    let plan = Plan::new(&config);
    let (control, _) = crossbeam_channel::unbounded();
    let stats = Arc::new(RouteStats::new("stage", "es"));
    let shared = Arc::new(Shared {
        registry: Arc::new(Registry::default()),
        route_stopped: vec![AtomicBool::new(false)],
        route_ended: vec![AtomicBool::new(false)],
        route_language: vec![Arc::from("es")],
        plan: plan.clone(),
        config: Arc::clone(&config),
        shutdown: Shutdown::new(),
        control,
        route_stats: vec![Arc::clone(&stats)],
        sink_lanes: plan.sinks.iter().map(|_| Arc::new(SinkLane::new(1 << 22))).collect(),
        sink_stats: plan.sinks.iter().map(|s| Arc::new(SinkStats::new(&s.id))).collect(),
        over_budget: AtomicBool::new(false),
        gates: gate::Gates::new(&config, &plan),
        relay_inputs: vec![std::sync::Mutex::new(vec![])],
        listen: None,
    });
    let engine = EngineTarget { engine: config.engine.clone(), url: None };
    RouteTask::new(shared, 0, engine, None, stats)
}

/// One step of a fuzzed run.
#[derive(Debug, Clone)]
enum Step {
    /// `n` frames of input (speech-like or silence).
    Input(usize, bool),
    Tick,
    Out(Output),
}

fn id() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", ""]).prop_map(String::from)
}

fn ms() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..10_000, Just(u64::MAX), Just(u64::MAX / 24), Just(u64::MAX / 24 + 1), any::<u64>()]
}

fn usage() -> impl Strategy<Value = Usage> {
    prop::collection::vec(prop_oneof![0u64..1000, Just(u64::MAX), any::<u64>()], 11).prop_map(|v| Usage {
        input_tokens: v[0],
        input_text: v[1],
        input_audio: v[2],
        input_image: v[3],
        input_cached: v[4],
        input_cached_text: v[5],
        input_cached_audio: v[6],
        output_tokens: v[7],
        output_text: v[8],
        output_audio: v[9],
        total_tokens: v[10],
    })
}

fn output() -> impl Strategy<Value = Output> {
    prop_oneof![
        (id(), ms()).prop_map(|(item_id, audio_start_ms)| Output::SpeechStarted { item_id, audio_start_ms }),
        (id(), ms()).prop_map(|(item_id, audio_end_ms)| Output::SpeechStopped { item_id, audio_end_ms }),
        id().prop_map(|item_id| Output::Committed { item_id }),
        (id(), ".{0,8}").prop_map(|(item_id, text)| Output::SourceTranscript { item_id, text }),
        id().prop_map(|response_id| Output::ResponseStarted { response_id }),
        (id(), 0usize..4800).prop_map(|(response_id, n)| Output::Audio {
            response_id,
            item_id: "x".into(),
            samples: vec![100; n]
        }),
        (id(), ".{0,8}").prop_map(|(response_id, text)| Output::Transcript { response_id, item_id: "x".into(), text }),
        (id(), usage(), prop::sample::select(vec!["completed", "cancelled", "failed"])).prop_map(
            |(response_id, usage, status)| Output::ResponseDone {
                response_id,
                status: status.into(),
                usage,
                output_item_ids: vec!["x".into()],
            }
        ),
        (id(), ms()).prop_map(|(item_id, audio_end_ms)| Output::Truncated { item_id, audio_end_ms }),
        (id(), ms()).prop_map(|(item_id, played_ms)| Output::Interrupted {
            response_id: item_id.clone(),
            item_id,
            played_ms
        }),
        Just(Output::Error(ServerError {
            class: ErrorClass::Invalid,
            kind: "invalid_request_error".into(),
            code: None,
            message: "m".into(),
            param: None,
            event_id: None,
        })),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..24_000, any::<bool>()).prop_map(|(n, s)| Step::Input(n, s)),
        Just(Step::Tick),
        output().prop_map(Step::Out),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..Default::default() })]

    /// Arbitrary outputs of the live session, between input and ticks: no panic, and what the
    /// route derives from the service's positions stays inside the input it has written.
    #[test]
    fn arbitrary_session_outputs_never_panic_the_route(steps in prop::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async {
            let mut t = task();
            let (handle, _input, _out) = realtime::detached_handle();
            t.install(handle, false);
            let mut offset = 0u64;
            for s in steps {
                match s {
                    Step::Input(n, speech) => {
                        let samples: Vec<i16> =
                            (0..n).map(|i| if speech { ((i * 7919) % 12_000) as i16 - 6_000 } else { 0 }).collect();
                        t.on_input(Chunk { offset, samples: Arc::from(samples), born: Instant::now() });
                        offset += n as u64;
                    }
                    Step::Tick => t.on_tick(),
                    Step::Out(o) => {
                        let generation = t.generation;
                        if t.on_output(generation, o, false).is_some() {
                            break;
                        }
                    }
                }
                let live = t.live.as_ref().expect("the session stays");
                let written_end = live.base + live.written;
                prop_assert!(live.speech_start <= written_end.max(live.base));
                prop_assert!(live.committed_upto <= written_end.max(t.confirmed));
                prop_assert!(live.commits.iter().all(|c| c.upto <= written_end && c.anchor <= written_end));
                prop_assert!(t.confirmed <= t.received.max(t.confirmed));
            }
            Ok(())
        })?;
    }
}
