//! Language names in their own language, for the listener's language list (a listener looks
//! for the language they understand, written as they write it). Tags not in the table show as
//! the tag itself; a region subtag is kept in parentheses (`pt-BR` → `Português (BR)`).

/// `(primary subtag, endonym)`.
const NAMES: &[(&str, &str)] = &[
    ("ar", "العربية"),
    ("bg", "Български"),
    ("bn", "বাংলা"),
    ("ca", "Català"),
    ("cs", "Čeština"),
    ("cy", "Cymraeg"),
    ("da", "Dansk"),
    ("de", "Deutsch"),
    ("el", "Ελληνικά"),
    ("en", "English"),
    ("es", "Español"),
    ("et", "Eesti"),
    ("eu", "Euskara"),
    ("fa", "فارسی"),
    ("fi", "Suomi"),
    ("fr", "Français"),
    ("ga", "Gaeilge"),
    ("gl", "Galego"),
    ("he", "עברית"),
    ("hi", "हिन्दी"),
    ("hr", "Hrvatski"),
    ("hu", "Magyar"),
    ("id", "Bahasa Indonesia"),
    ("is", "Íslenska"),
    ("it", "Italiano"),
    ("ja", "日本語"),
    ("ko", "한국어"),
    ("lt", "Lietuvių"),
    ("lv", "Latviešu"),
    ("ms", "Bahasa Melayu"),
    ("mt", "Malti"),
    ("nb", "Norsk bokmål"),
    ("nl", "Nederlands"),
    ("nn", "Norsk nynorsk"),
    ("no", "Norsk"),
    ("pl", "Polski"),
    ("pt", "Português"),
    ("ro", "Română"),
    ("ru", "Русский"),
    ("sk", "Slovenčina"),
    ("sl", "Slovenščina"),
    ("sq", "Shqip"),
    ("sr", "Српски"),
    ("sv", "Svenska"),
    ("sw", "Kiswahili"),
    ("ta", "தமிழ்"),
    ("th", "ไทย"),
    ("tr", "Türkçe"),
    ("uk", "Українська"),
    ("ur", "اردو"),
    ("vi", "Tiếng Việt"),
    ("zh", "中文"),
];

/// The name of language `tag` in that language.
pub fn native_name(tag: &str) -> String {
    let mut parts = tag.splitn(2, '-');
    let primary = parts.next().unwrap_or(tag).to_ascii_lowercase();
    let rest = parts.next();
    match NAMES.iter().find(|(c, _)| *c == primary) {
        Some((_, name)) => match rest {
            Some(r) => format!("{name} ({r})"),
            None => name.to_string(),
        },
        None => tag.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_endonyms_with_the_region_kept() {
        assert_eq!(native_name("es"), "Español");
        assert_eq!(native_name("pt-BR"), "Português (BR)");
        assert_eq!(native_name("zh-Hant"), "中文 (Hant)");
        assert_eq!(native_name("tlh"), "tlh");
        let mut codes: Vec<&str> = NAMES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        assert_eq!(codes, NAMES.iter().map(|(c, _)| *c).collect::<Vec<_>>(), "table is sorted, no duplicates");
    }
}
