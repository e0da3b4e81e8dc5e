//! Medical vocabulary: the terms (drug names, clinician and clinic names, ...) a deployment and
//! each user want spelled as given, passed to the engine as its prompt within Whisper's budget.

use serde::{Deserialize, Serialize};

/// At most this many terms in one vocabulary (a deployment's, or a user's).
pub const MAX_TERMS: usize = 200;
/// At most this many characters in one term.
pub const MAX_TERM_CHARS: usize = 64;
/// Whisper conditions on at most this many prompt tokens: half its 448-token text context, less
/// the start-of-previous token (whisper.cpp keeps the last `n_text_ctx / 2 - 1`). OpenAI
/// documents the same limit for whisper-1's `prompt` (224 tokens).
pub const PROMPT_TOKEN_BUDGET: usize = 223;

/// A list of terms: trimmed, none empty, no repeats (ignoring case), in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Vocabulary {
    terms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabularyError {
    #[error("a vocabulary holds at most {MAX_TERMS} terms")]
    TooManyTerms,
    #[error("term {0} is longer than {MAX_TERM_CHARS} characters")]
    TermTooLong(usize),
    /// A comma would split the term in the prompt's list; control characters end C strings.
    #[error("term {0} contains a comma or a control character")]
    InvalidTerm(usize),
}

impl Vocabulary {
    /// Checks and tidies `terms`; positions in errors count from 1, as a user would.
    pub fn new<S: AsRef<str>>(terms: impl IntoIterator<Item = S>) -> Result<Self, VocabularyError> {
        let mut kept: Vec<String> = Vec::new();
        for (index, term) in terms.into_iter().enumerate() {
            let term = term
                .as_ref()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let position = index + 1;
            if term.is_empty() {
                continue;
            }
            if term.chars().count() > MAX_TERM_CHARS {
                return Err(VocabularyError::TermTooLong(position));
            }
            if term.chars().any(|c| c == ',' || c.is_control()) {
                return Err(VocabularyError::InvalidTerm(position));
            }
            if !kept.iter().any(|k| k.to_lowercase() == term.to_lowercase()) {
                kept.push(term);
            }
        }
        if kept.len() > MAX_TERMS {
            return Err(VocabularyError::TooManyTerms);
        }
        Ok(Self { terms: kept })
    }

    /// A comma- or newline-separated list, as the `VOCABULARY` setting holds it.
    pub fn parse_list(raw: &str) -> Result<Self, VocabularyError> {
        Self::new(raw.split([',', '\n']))
    }

    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl TryFrom<Vec<String>> for Vocabulary {
    type Error = VocabularyError;
    fn try_from(terms: Vec<String>) -> Result<Self, Self::Error> {
        Self::new(terms)
    }
}

impl From<Vocabulary> for Vec<String> {
    fn from(vocabulary: Vocabulary) -> Self {
        vocabulary.terms
    }
}

/// The prompt for one recording, and how many terms made it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: Option<String>,
    pub terms_used: usize,
    pub terms_left_out: usize,
}

/// Builds the engine's prompt: the deployment's terms, then the user's, as one list ("Metformin,
/// Lisinopril, Dr. Okafor."), then the upload's own prompt. Whisper reads at most
/// [`PROMPT_TOKEN_BUDGET`] tokens and keeps the *end* of a longer prompt, so the most specific
/// comes last, and when the whole does not fit, terms are left out from the front (the
/// deployment's first) until it does. An upload prompt over the budget on its own is passed
/// whole, without terms: the engine keeps its end. `tokens` counts a text's tokens as the
/// engine will.
pub fn compose_prompt(
    deployment: &Vocabulary,
    user: &Vocabulary,
    upload: Option<&str>,
    tokens: &dyn Fn(&str) -> usize,
) -> Prompt {
    // A term in both lists keeps the user's place.
    let mut terms: Vec<&str> = Vec::new();
    for term in deployment.terms().iter().chain(user.terms()) {
        terms.retain(|t| t.to_lowercase() != term.to_lowercase());
        terms.push(term);
    }
    let upload = upload.map(str::trim).filter(|p| !p.is_empty());
    let text_from = |first: usize| -> Option<String> {
        let list = (first < terms.len()).then(|| format!("{}.", terms[first..].join(", ")));
        match (list, upload) {
            (Some(list), Some(upload)) => Some(format!("{list} {upload}")),
            (list, upload) => list.or_else(|| upload.map(str::to_owned)),
        }
    };
    let fits =
        |first: usize| text_from(first).is_none_or(|text| tokens(&text) <= PROMPT_TOKEN_BUDGET);
    // Leaving terms out never lengthens the prompt: the first that fits is found by halving.
    let (mut low, mut high) = (0, terms.len());
    while low < high {
        let middle = (low + high) / 2;
        if fits(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Prompt {
        text: text_from(low),
        terms_used: terms.len() - low,
        terms_left_out: low,
    }
}

/// For engines whose tokenizer MMT does not hold (the cloud API), an estimate of a text's
/// tokens: half its bytes. Whisper's byte-level BPE averages three or more bytes a token on
/// English words and drug names, so this leaves terms out early rather than late; where it
/// undercounts (rare words of one or two bytes a token) the API, like Whisper, keeps the end of
/// the prompt, which costs the same front terms.
pub fn estimated_tokens(text: &str) -> usize {
    text.len().div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn terms_are_tidied_and_checked() {
        let v = Vocabulary::new(["  Metformin ", "", "lisinopril", "METFORMIN", "Dr.  Okafor"])
            .unwrap();
        assert_eq!(v.terms(), ["Metformin", "lisinopril", "Dr. Okafor"]);
        assert_eq!(
            Vocabulary::new(["ok", "a, b"]),
            Err(VocabularyError::InvalidTerm(2))
        );
        assert_eq!(
            Vocabulary::new(["nul\u{0}"]),
            Err(VocabularyError::InvalidTerm(1))
        );
        assert_eq!(
            Vocabulary::new(["x".repeat(MAX_TERM_CHARS + 1)]),
            Err(VocabularyError::TermTooLong(1))
        );
        let many: Vec<String> = (0..=MAX_TERMS).map(|i| format!("term{i}")).collect();
        assert_eq!(Vocabulary::new(&many), Err(VocabularyError::TooManyTerms));
        assert_eq!(
            Vocabulary::parse_list("Ozempic,\nWegovy , ")
                .unwrap()
                .terms(),
            ["Ozempic", "Wegovy"]
        );
        let json: Vocabulary = serde_json::from_str(r#"["a", " a ", "b"]"#).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), r#"["a","b"]"#);
        assert!(serde_json::from_str::<Vocabulary>(r#"["a,b"]"#).is_err());
    }

    #[test]
    fn the_prompt_lists_deployment_then_user_terms_then_the_upload_prompt() {
        let deployment = Vocabulary::new(["Metformin", "Lisinopril"]).unwrap();
        let user = Vocabulary::new(["Dr. Okafor", "metformin"]).unwrap();
        let prompt = compose_prompt(&deployment, &user, Some(" Follow-up visit. "), &words);
        assert_eq!(
            prompt.text.as_deref(),
            Some("Lisinopril, Dr. Okafor, metformin. Follow-up visit.")
        );
        assert_eq!((prompt.terms_used, prompt.terms_left_out), (3, 0));
        let none = compose_prompt(&Vocabulary::default(), &Vocabulary::default(), None, &words);
        assert_eq!(none.text, None);
        let only_terms = compose_prompt(&deployment, &Vocabulary::default(), Some(" "), &words);
        assert_eq!(only_terms.text.as_deref(), Some("Metformin, Lisinopril."));
    }

    #[test]
    fn terms_are_left_out_from_the_front_until_the_prompt_fits() {
        let deployment: Vec<String> = (0..100).map(|i| format!("deployment{i}")).collect();
        let user: Vec<String> = (0..150).map(|i| format!("user{i}")).collect();
        let (deployment, user) = (
            Vocabulary::new(&deployment).unwrap(),
            Vocabulary::new(&user).unwrap(),
        );
        let upload = "one two three four five";
        let prompt = compose_prompt(&deployment, &user, Some(upload), &words);
        let text = prompt.text.unwrap();
        assert_eq!(
            words(&text),
            PROMPT_TOKEN_BUDGET,
            "as many as fit, no fewer"
        );
        assert!(text.ends_with("user149. one two three four five"), "{text}");
        assert_eq!(prompt.terms_used, PROMPT_TOKEN_BUDGET - 5);
        assert_eq!(prompt.terms_left_out, 250 - prompt.terms_used);
        // 218 of 250 fit: the deployment's first 32 are left out, the user's all kept.
        assert!(text.starts_with("deployment32, deployment33,"), "{text}");

        // An upload prompt over the budget alone goes whole, without terms.
        let long = "word ".repeat(PROMPT_TOKEN_BUDGET + 10);
        let prompt = compose_prompt(&deployment, &user, Some(&long), &words);
        assert_eq!(prompt.text.as_deref(), Some(long.trim()));
        assert_eq!((prompt.terms_used, prompt.terms_left_out), (0, 250));
    }

    #[test]
    fn the_estimate_is_half_the_bytes_rounded_up() {
        assert_eq!(estimated_tokens("abc"), 2);
        assert_eq!(estimated_tokens("é"), 1);
        assert_eq!(estimated_tokens(""), 0);
    }
}
