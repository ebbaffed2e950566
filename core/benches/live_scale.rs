//! Live scale: what each live route costs, at the defaults, against a one-route run measured
//! in the same bench run.
//!
//! `tolk run` reads one real-time source (the keynote sample, looped, with a pause after every
//! 4 s so the server's VAD ends a turn there) into N translated routes of a `tolk serve` on
//! loopback, each route with a captions sink (JSONL), every setting at its default (segment cuts
//! then never trigger: the turns are 4 s). For N = 1 and N = `TOLK_BENCH_ROUTES` (64), after a
//! warm-up: CPU seconds of the `tolk run` process over `TOLK_BENCH_SECONDS` (30), its resident
//! memory at the end of the window, and the system-added latency per route (p50 and p99, from
//! the run's own summary). It prints, per run and as medians over `TOLK_BENCH_RUNS` rounds (1),
//! the CPU share of a core per route, RSS per route above the one-route run, and the median and
//! worst route's p99. Targets (issue 12): p99 ≤ 10 ms at 64 routes, RSS ≤ 1 MB per route.
//!
//! ```sh
//! cargo bench -p tolk-core --bench live_scale
//! TOLK_BENCH_ROUTES=64 TOLK_BENCH_SECONDS=60 TOLK_BENCH_RUNS=3 cargo bench -p tolk-core --bench live_scale
//! ```
//!
//! It builds the release `tolk` and its plugins into `target/bench-build` and removes its files
//! (`target/bench-live/`) at the end.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

mod common;

use common::{
    Guard, Scratch, build_release, cpu_seconds, dirs, env_num, keynote_with_pauses, load, median, rss_mb, serve,
};

const WARMUP: Duration = Duration::from_secs(8);
const LANGS: [&str; 64] = [
    "es", "fr", "de", "it", "pt", "nl", "sv", "pl", "ru", "ja", "ko", "zh", "ar", "hi", "tr", "cs", "da", "fi", "no",
    "el", "he", "hu", "id", "ms", "ro", "sk", "sl", "sr", "uk", "vi", "th", "bg", "ca", "hr", "et", "lt", "lv", "fa",
    "ur", "bn", "ta", "te", "mr", "gu", "kn", "ml", "pa", "sw", "af", "sq", "hy", "az", "eu", "be", "bs", "cy", "gl",
    "is", "ka", "kk", "mk", "mn", "ne", "si",
];

/// One measured run.
struct Run {
    cpu: f64,
    rss: f64,
    /// Per route: (p50, p99) of the system-added latency, ms.
    latency: Vec<(f64, f64)>,
}

fn main() {
    let routes = env_num("TOLK_BENCH_ROUTES", 64).min(LANGS.len() as u64) as usize;
    let seconds = env_num("TOLK_BENCH_SECONDS", 30);
    let runs = env_num("TOLK_BENCH_RUNS", 1) as usize;
    let (root, target) = dirs();
    let tolk = build_release(&root, &target, &["tolk-source-wav", "tolk-sink-captions"]);
    let scratch = Scratch(target.join("bench-live"));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).expect("bench dir");
    let input = dir.join("speech.wav");
    keynote_with_pauses(&root.join("configs/samples/keynote-en.wav"), &input);
    let (server, url) = serve(&tolk);

    let load_before = load();
    let mut one = vec![];
    let mut many = vec![];
    for round in 0..runs {
        for n in if round % 2 == 0 { [1, routes] } else { [routes, 1] } {
            let r = run(&tolk, &dir, &url, &input, n, seconds);
            let p99 = median(r.latency.iter().map(|l| l.1));
            eprintln!(
                "round {}: {n:>2} route(s): cpu {:.2} s, rss {:.1} MB, system-added p99 median {p99:.2} ms",
                round + 1,
                r.cpu,
                r.rss
            );
            if n == 1 { one.push(r) } else { many.push(r) }
        }
    }
    let load_after = load();
    let cpu1 = median(one.iter().map(|r| r.cpu));
    let cpun = median(many.iter().map(|r| r.cpu));
    let rss1 = median(one.iter().map(|r| r.rss));
    let rssn = median(many.iter().map(|r| r.rss));
    let p99 = |rs: &[Run]| median(rs.iter().map(|r| median(r.latency.iter().map(|l| l.1))));
    let worst = |rs: &[Run]| median(rs.iter().map(|r| r.latency.iter().map(|l| l.1).fold(0.0, f64::max)));
    let p50 = |rs: &[Run]| median(rs.iter().map(|r| median(r.latency.iter().map(|l| l.0))));
    println!(
        "live scale, one real-time source into N routes to tolk serve, {seconds} s windows, {runs} round(s) (medians)"
    );
    println!("  load average before: {load_before}; after: {load_after}");
    println!(
        "  1 route            cpu {cpu1:.2} s ({:.2} % of a core)  rss {rss1:.1} MB  system-added p50 {:.2} ms, p99 {:.2} ms",
        100.0 * cpu1 / seconds as f64,
        p50(&one),
        p99(&one)
    );
    println!(
        "  {routes} routes          cpu {cpun:.2} s ({:.2} % of a core)  rss {rssn:.1} MB  system-added p50 {:.2} ms, p99 {:.2} ms (worst route {:.2} ms)",
        100.0 * cpun / seconds as f64,
        p50(&many),
        p99(&many),
        worst(&many)
    );
    println!(
        "  per route: {:.3} % of a core, {:.2} MB above the one-route run (targets: p99 ≤ 10 ms, ≤ 1 MB per route)",
        100.0 * cpun / seconds as f64 / routes as f64,
        (rssn - rss1) / (routes - 1).max(1) as f64
    );
    drop(server);
    drop(scratch);
}

/// `tolk run` with `n` routes: CPU and RSS over the window after the warm-up, and the latency
/// figures of its summary (it is stopped with SIGINT, which prints the summary).
fn run(tolk: &Path, dir: &Path, url: &str, input: &Path, n: usize, seconds: u64) -> Run {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let config = dir.join(format!("live-{n}.toml"));
    std::fs::write(&config, config_text(url, input, &LANGS[..n])).expect("write the config");
    let mut child = Guard(
        Command::new(tolk)
            .args(["run", "--no-status"])
            .arg(&config)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tolk run"),
    );
    std::thread::sleep(WARMUP);
    let pid = child.0.id();
    let c0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = cpu_seconds(pid) - c0;
    let rss = rss_mb(pid);
    assert!(child.0.try_wait().expect("wait").is_none(), "tolk run ended early");
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().expect("stdout"), &mut out).expect("read the summary");
    let latency: Vec<(f64, f64)> = out
        .lines()
        .filter_map(|l| {
            let rest = l.split("system p50 ").nth(1)?;
            let p50 = rest.split(" ms").next()?.parse().ok()?;
            let p99 = rest.split("p99 ").nth(1)?.split(" ms").next()?.parse().ok()?;
            Some((p50, p99))
        })
        .collect();
    assert_eq!(latency.len(), n, "the summary does not give every route's latency:\n{out}");
    Run { cpu, rss, latency }
}

fn config_text(url: &str, input: &Path, langs: &[&str]) -> String {
    let to = langs.iter().map(|l| format!("\"{l}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "# Written by core/benches/live_scale.rs\n[engine]\nprovider = \"local\"\nurl = \"{url}/v1/realtime\"\n\n\
         [[source]]\nid = \"stage\"\nplugin = \"tolk.wav\"\nlanguage = \"en\"\n[source.config]\npath = \"{}\"\n\
         realtime = true\nloop = true\n\n[[route]]\nsource = \"stage\"\nto = [{to}]\nsinks = [\"cap\"]\n\n\
         [[sink]]\nid = \"cap\"\nplugin = \"tolk.captions\"\n[sink.config]\njsonl = \"out/{{lang}}.jsonl\"\n",
        input.display()
    )
}
