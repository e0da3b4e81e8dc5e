//! ISO 639-1 codes and the English language names OpenAI's `verbose_json` uses.

const LANGUAGES: &[(&str, &str)] = &[
    ("en", "english"),
    ("es", "spanish"),
    ("fr", "french"),
    ("de", "german"),
    ("it", "italian"),
    ("pt", "portuguese"),
    ("nl", "dutch"),
    ("pl", "polish"),
    ("ru", "russian"),
    ("uk", "ukrainian"),
    ("zh", "chinese"),
    ("ja", "japanese"),
    ("ko", "korean"),
    ("ar", "arabic"),
    ("hi", "hindi"),
    ("tr", "turkish"),
    ("vi", "vietnamese"),
    ("sv", "swedish"),
    ("no", "norwegian"),
    ("da", "danish"),
    ("fi", "finnish"),
    ("el", "greek"),
    ("he", "hebrew"),
    ("cs", "czech"),
    ("ro", "romanian"),
    ("hu", "hungarian"),
];

/// "english" → "en"; a two-letter input is taken as a code already.
pub fn language_code(name: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase();
    if name.len() == 2 {
        return Some(name);
    }
    LANGUAGES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| (*c).to_owned())
}

/// "en" → "english"; unknown codes are returned as they are.
pub fn language_name(code: &str) -> String {
    LANGUAGES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| code.to_owned(), |(_, n)| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        assert_eq!(language_code("English").as_deref(), Some("en"));
        assert_eq!(language_code("de").as_deref(), Some("de"));
        assert_eq!(language_code("klingon"), None);
        assert_eq!(language_name("en"), "english");
        assert_eq!(language_name("xx"), "xx");
    }
}
