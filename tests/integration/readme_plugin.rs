//! plugin-api/README.md is tested as a newcomer would follow it: its Cargo.toml and lib.rs are
//! taken from the README text, built as an out-of-tree crate against a copy of plugin-api
//! outside tolk's workspace (as a vendored or copied folder, no edits), listed by `tolk
//! plugins`, checked by `tolk plugins check`, and run.

use std::path::Path;

use tolk_core::plugin_host::{HostServices, Registry, SearchPath, discover::Origin};
use tolk_plugin_api::{PluginKind, TextEvent, TextRole};
use tolk_tests::{cargo_build, lib_file, root, run, target_dir, tolk};

/// The fenced block of `lang` whose first line is `marker`.
fn block(readme: &str, lang: &str, marker: &str) -> String {
    let start =
        readme.find(&format!("```{lang}\n{marker}\n")).unwrap_or_else(|| panic!("README has no {marker} block"));
    let body = &readme[start + lang.len() + 4..];
    body[..body.find("\n```").expect("closed block")].to_string()
}

#[test]
fn the_readme_plugin_builds_lists_passes_checks_and_runs() {
    let readme = std::fs::read_to_string(root().join("plugin-api/README.md")).unwrap();
    let crate_dir = tempfile::tempdir().unwrap();
    // The plugin-api crate as an author gets it: a copy outside tolk's workspace (vendored
    // into the plugin's own folder), used with no edits.
    let api = crate_dir.path().join("vendor/tolk-plugin-api");
    copy_dir(&root().join("plugin-api"), &api);
    let manifest = block(&readme, "toml", "# Cargo.toml").replace("../tolk/plugin-api", &api.display().to_string());
    std::fs::write(crate_dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(crate_dir.path().join("src")).unwrap();
    std::fs::write(crate_dir.path().join("src/lib.rs"), block(&readme, "rust", "// src/lib.rs")).unwrap();
    cargo_build(crate_dir.path(), &["--quiet"]);

    // Only this library in its plugin directory.
    let plugins = tempfile::tempdir().unwrap();
    let lib = plugins.path().join(lib_file("acme_tolk_hello"));
    std::fs::copy(target_dir().join("fixtures/debug").join(lib_file("acme_tolk_hello")), &lib).unwrap();

    let r = run(tolk().args(["plugins", "--path"]).arg(plugins.path()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = r.stdout.lines().find(|l| l.starts_with("com.acme.transcript-txt")).expect("listed");
    assert!(line.contains(" sink ") && line.contains("0.1.0") && line.ends_with(&lib.display().to_string()), "{line}");

    let r = run(tolk().args(["plugins", "check"]).arg(&lib));
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    // It runs: events in, a file out.
    let out = tempfile::tempdir().unwrap();
    run_sink(plugins.path(), out.path());
    assert_eq!(std::fs::read_to_string(out.path().join("es.txt")).unwrap(), "[es] Buenos días.\n[es] Gracias.\n");
}

/// Copies `from` to `to` recursively, leaving out build output.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn run_sink(plugin_dir: &Path, out: &Path) {
    let mut search = SearchPath::default();
    search.dirs.push((plugin_dir.to_path_buf(), Origin::Config));
    let reg = Registry::discover(&search);
    assert!(reg.errors.is_empty(), "{:?}", reg.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert!(reg.get(PluginKind::Sink, "com.acme.transcript-txt").is_some());
    let host = HostServices {
        instance_id: "t:es".into(),
        plugin_id: "com.acme.transcript-txt".into(),
        config_dir: out.to_path_buf(),
    };
    let mut sink = reg.create_sink("com.acme.transcript-txt", "path = \"es.txt\"", host).unwrap();
    sink.start().unwrap();
    for e in [
        TextEvent::new(TextRole::Translation, false, 1, "es", "Buenos ", 0, 500),
        TextEvent::new(TextRole::Translation, true, 1, "es", "Buenos días.", 0, 900),
        TextEvent::new(TextRole::Source, true, 2, "en", "Thank you.", 1000, 1500),
        TextEvent::new(TextRole::Translation, true, 2, "es", "Gracias.", 1000, 1600),
    ] {
        sink.on_text(e).unwrap();
    }
    sink.flush().unwrap();
    sink.stop().unwrap();
}

/// Builds a plugin crate whose lib.rs exports `exports` (two tone-like sources with the given
/// ids); returns cargo's stderr, asserting that the build failed.
fn build_failure(ids: [&str; 2]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let api = root().join("plugin-api");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"bad-ids\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\ntolk-plugin-api = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n",
            api.display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let source = |ty: &str, id: &str| {
        format!(
            "pub struct {ty};\nimpl AudioSource for {ty} {{\n    const ID: &'static str = {id:?};\n    const NAME: &'static str = \"x\";\n    const VERSION: &'static str = \"0.1.0\";\n    type Config = Empty;\n    fn new(_: Empty, _: &Host) -> Result<Self, PluginError> {{ Ok({ty}) }}\n    fn format(&self) -> AudioFormat {{ AudioFormat::SESSION }}\n    fn start(&mut self, _: AudioWriter) -> Result<(), PluginError> {{ Ok(()) }}\n}}\n"
        )
    };
    let lib = format!(
        "use tolk_plugin_api::prelude::*;\n#[derive(Deserialize)]\npub struct Empty {{}}\n{}{}tolk_plugin_api::export_plugins! {{ sources: [FirstSource, SecondSource] }}\n",
        source("FirstSource", ids[0]),
        source("SecondSource", ids[1])
    );
    std::fs::write(dir.path().join("src/lib.rs"), lib).unwrap();
    let out = tolk_tests::cargo_build_output(dir.path(), &["--quiet"]);
    assert!(!out.status.success(), "a bad id compiled");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_export_macro_names_the_bad_id_and_its_type() {
    let err = build_failure(["com.acme.fine", "Com.Acme.Shouty"]);
    assert!(
        err.contains("plugin id \"Com.Acme.Shouty\" of source SecondSource is not a lower-case reverse-DNS name"),
        "{err}"
    );
    let err = build_failure(["com.acme.twin", "com.acme.twin"]);
    assert!(err.contains("two sources share the id \"com.acme.twin\": FirstSource and SecondSource"), "{err}");
}
