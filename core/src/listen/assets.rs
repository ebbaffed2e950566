//! The listener page's files, compiled into the binary (`include_bytes!`): nothing is read from
//! disk or fetched from a CDN at run time. [`asset`] maps the fixed set of paths to them; every
//! other path is unknown (404).

/// `(path, content type, bytes)` of every file served.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("web/index.html")),
    ("/index.html", "text/html; charset=utf-8", include_bytes!("web/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_bytes!("web/app.js")),
    ("/worklet.js", "text/javascript; charset=utf-8", include_bytes!("web/worklet.js")),
    ("/style.css", "text/css; charset=utf-8", include_bytes!("web/style.css")),
    ("/icon.svg", "image/svg+xml", include_bytes!("web/icon.svg")),
    ("/operator.js", "text/javascript; charset=utf-8", include_bytes!("web/operator.js")),
];

/// The content type and bytes served at `path`, if it is one of the page's files.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|(p, ..)| *p == path).map(|(_, t, b)| (*t, *b))
}

/// The page with the event's title in it (HTML-escaped).
pub fn index(title: &str) -> Vec<u8> {
    let page = String::from_utf8_lossy(include_bytes!("web/index.html"));
    page.replace("{{TITLE}}", &escape(title)).into_bytes()
}

/// The operator console's page (served only with its token) with the event's title.
pub fn operator(title: &str) -> Vec<u8> {
    let page = String::from_utf8_lossy(include_bytes!("web/operator.html"));
    page.replace("{{TITLE}}", &escape(title)).into_bytes()
}

/// `text` with HTML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fixed_paths_are_assets() {
        assert!(asset("/app.js").is_some());
        for p in ["/../Cargo.toml", "/app.js/", "/%2e%2e/etc/passwd", "/web/app.js", "", "/APP.JS"] {
            assert!(asset(p).is_none(), "{p}");
        }
    }

    #[test]
    fn the_title_is_escaped() {
        let page = String::from_utf8(index("<b>Keynote & \"Q\"</b>")).unwrap();
        assert!(page.contains("&lt;b&gt;Keynote &amp; &quot;Q&quot;&lt;/b&gt;"));
        assert!(!page.contains("{{TITLE}}"));
    }
}
