//! Small helpers shared by the config validator and the plugin host.

/// Levenshtein distance between two strings (by chars).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(2);
    // One a prefix of the other ("interp" for "interpreter") is as plausible as a typo.
    let prefix = |c: &str| c.len().min(word.len()) >= 3 && (c.starts_with(word) || word.starts_with(c));
    candidates
        .into_iter()
        .map(|c| (if prefix(c) { 1 } else { edit_distance(word, c) }, c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, c.to_string()))
        .map(|(_, c)| c.to_string())
}

/// ` (did you mean "x"?)` or nothing.
pub fn did_you_mean(word: &str, candidates: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let owned: Vec<String> = candidates.into_iter().map(|c| c.as_ref().to_string()).collect();
    match closest(word, owned.iter().map(String::as_str)) {
        Some(c) if c != word => format!(" (did you mean \"{c}\"?)"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("tolk.wavv", "tolk.wav"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("tolk.wavv", ["tolk.tone", "tolk.wav"]), Some("tolk.wav".into()));
        assert_eq!(closest("com.acme.x", ["tolk.tone", "tolk.wav"]), None);
        assert_eq!(did_you_mean("captons", ["captions", "file"]), " (did you mean \"captions\"?)");
        assert_eq!(did_you_mean("zzz", ["captions"]), "");
        assert_eq!(did_you_mean("interpreter", ["interp", "file"]), " (did you mean \"interp\"?)");
    }
}
