//! Structured notes: templates name a note's sections, and a dictation is split into them at
//! the headings the clinician spoke ("Subjective ... Objective ... Assessment ... Plan ...").
//!
//! Whisper writes a spoken heading in many ways: "Subjective:", "subjective.", "Subjective,
//! the patient ...", "SUBJECTIVE -", or mid-sentence after a full stop. A heading counts only
//! where a sentence or line begins (or the text begins) and is followed by punctuation or a
//! line end, so "the plan is to..." stays in the text while "Plan: ..." starts a section.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::NoteSection;

/// A note layout: its sections in order, each with the SOAP field it is charted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteTemplate {
    /// Subjective, Objective, Assessment, Plan.
    Soap,
    /// History and physical: chief complaint, HPI, past history, medications, allergies,
    /// review of systems, exam, assessment, plan.
    HistoryAndPhysical,
    /// Progress note: interval history, exam, assessment, plan.
    ProgressNote,
}

/// One section of a template: its key, its title, the SOAP field it is charted in, and the
/// spoken headings that start it (lower case, without punctuation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionSpec {
    pub key: &'static str,
    pub title: &'static str,
    pub field: NoteSection,
    pub headings: &'static [&'static str],
}

const SUBJECTIVE: &[&str] = &[
    "subjective",
    "history of present illness",
    "history of the present illness",
    "hpi",
    "chief complaint",
    "history",
    "interval history",
    "s",
];
const OBJECTIVE: &[&str] = &[
    "objective",
    "physical examination",
    "physical exam",
    "examination",
    "exam",
    "findings",
    "vital signs",
    "vitals",
    "o",
];
const ASSESSMENT: &[&str] = &[
    "assessment",
    "assessment and plan",
    "impression",
    "diagnosis",
    "diagnoses",
    "assessment and impression",
    "clinical impression",
    "a",
];
const PLAN: &[&str] = &[
    "plan",
    "plan of care",
    "treatment plan",
    "recommendations",
    "disposition",
    "p",
];

const SOAP: &[SectionSpec] = &[
    SectionSpec {
        key: "subjective",
        title: "Subjective",
        field: NoteSection::Subjective,
        headings: SUBJECTIVE,
    },
    SectionSpec {
        key: "objective",
        title: "Objective",
        field: NoteSection::Objective,
        headings: OBJECTIVE,
    },
    SectionSpec {
        key: "assessment",
        title: "Assessment",
        field: NoteSection::Assessment,
        headings: ASSESSMENT,
    },
    SectionSpec {
        key: "plan",
        title: "Plan",
        field: NoteSection::Plan,
        headings: PLAN,
    },
];

const HISTORY_AND_PHYSICAL: &[SectionSpec] = &[
    SectionSpec {
        key: "chief_complaint",
        title: "Chief complaint",
        field: NoteSection::Subjective,
        headings: &[
            "chief complaint",
            "reason for visit",
            "presenting complaint",
        ],
    },
    SectionSpec {
        key: "hpi",
        title: "History of present illness",
        field: NoteSection::Subjective,
        headings: &[
            "history of present illness",
            "history of the present illness",
            "hpi",
            "subjective",
        ],
    },
    SectionSpec {
        key: "past_history",
        title: "Past medical history",
        field: NoteSection::Subjective,
        headings: &[
            "past medical history",
            "medical history",
            "past history",
            "pmh",
        ],
    },
    SectionSpec {
        key: "medications",
        title: "Medications",
        field: NoteSection::Subjective,
        headings: &["medications", "current medications", "meds"],
    },
    SectionSpec {
        key: "allergies",
        title: "Allergies",
        field: NoteSection::Subjective,
        headings: &["allergies", "drug allergies"],
    },
    SectionSpec {
        key: "review_of_systems",
        title: "Review of systems",
        field: NoteSection::Subjective,
        headings: &["review of systems", "ros"],
    },
    SectionSpec {
        key: "exam",
        title: "Physical examination",
        field: NoteSection::Objective,
        headings: OBJECTIVE,
    },
    SectionSpec {
        key: "assessment",
        title: "Assessment",
        field: NoteSection::Assessment,
        headings: ASSESSMENT,
    },
    SectionSpec {
        key: "plan",
        title: "Plan",
        field: NoteSection::Plan,
        headings: PLAN,
    },
];

const PROGRESS_NOTE: &[SectionSpec] = &[
    SectionSpec {
        key: "interval_history",
        title: "Interval history",
        field: NoteSection::Subjective,
        headings: SUBJECTIVE,
    },
    SectionSpec {
        key: "exam",
        title: "Examination",
        field: NoteSection::Objective,
        headings: OBJECTIVE,
    },
    SectionSpec {
        key: "assessment",
        title: "Assessment",
        field: NoteSection::Assessment,
        headings: ASSESSMENT,
    },
    SectionSpec {
        key: "plan",
        title: "Plan",
        field: NoteSection::Plan,
        headings: PLAN,
    },
];

impl NoteTemplate {
    pub const ALL: [NoteTemplate; 3] = [Self::Soap, Self::HistoryAndPhysical, Self::ProgressNote];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soap => "soap",
            Self::HistoryAndPhysical => "history_and_physical",
            Self::ProgressNote => "progress_note",
        }
    }

    pub fn sections(self) -> &'static [SectionSpec] {
        match self {
            Self::Soap => SOAP,
            Self::HistoryAndPhysical => HISTORY_AND_PHYSICAL,
            Self::ProgressNote => PROGRESS_NOTE,
        }
    }

    pub fn section(self, key: &str) -> Option<&'static SectionSpec> {
        self.sections().iter().find(|s| s.key == key)
    }
}

impl FromStr for NoteTemplate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| "expected soap, history_and_physical or progress_note".into())
    }
}

impl fmt::Display for NoteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One section's text in a structured note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionText {
    /// The template's key for the section (`subjective`, `hpi`, ...).
    pub key: String,
    pub text: String,
}

/// A note split into a template's sections, in the template's order. Text spoken before the
/// first heading is kept in `preamble` (never dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructuredNote {
    pub template: NoteTemplate,
    pub sections: Vec<SectionText>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preamble: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    #[error("the {template} template has no section {key:?}")]
    UnknownSection { template: NoteTemplate, key: String },
    #[error("section {0:?} appears twice")]
    Repeated(String),
}

impl StructuredNote {
    /// Checks sections a client wrote against the template, and puts them in its order.
    pub fn from_parts(
        template: NoteTemplate,
        sections: Vec<SectionText>,
        preamble: String,
    ) -> Result<Self, StructureError> {
        let mut ordered: Vec<SectionText> = Vec::new();
        for spec in template.sections() {
            let mut matching = sections.iter().filter(|s| s.key == spec.key);
            if let Some(first) = matching.next() {
                if matching.next().is_some() {
                    return Err(StructureError::Repeated(spec.key.into()));
                }
                ordered.push(SectionText {
                    key: spec.key.into(),
                    text: first.text.trim().to_owned(),
                });
            }
        }
        if let Some(stranger) = sections.iter().find(|s| template.section(&s.key).is_none()) {
            return Err(StructureError::UnknownSection {
                template,
                key: stranger.key.clone(),
            });
        }
        Ok(Self {
            template,
            sections: ordered,
            preamble: preamble.trim().to_owned(),
        })
    }

    /// The text of each SOAP field, in field order: a field holding several of the template's
    /// sections gets each under its title; the preamble goes first into the first field used.
    pub fn soap_fields(&self) -> Vec<(NoteSection, String)> {
        let mut fields: Vec<(NoteSection, String)> = Vec::new();
        for field in NoteSection::ALL {
            let parts: Vec<(&SectionSpec, &str)> = self
                .sections
                .iter()
                .filter_map(|s| {
                    let spec = self.template.section(&s.key)?;
                    (spec.field == field && !s.text.trim().is_empty())
                        .then_some((spec, s.text.trim()))
                })
                .collect();
            let titled =
                parts.len() > 1 || parts.iter().any(|(spec, _)| spec.key != field.as_str());
            let text = parts
                .iter()
                .map(|(spec, text)| {
                    if titled {
                        format!("{}: {text}", spec.title)
                    } else {
                        (*text).to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            if !text.is_empty() {
                fields.push((field, text));
            }
        }
        if !self.preamble.is_empty() {
            match fields.first_mut() {
                Some((_, text)) => *text = format!("{}\n\n{text}", self.preamble),
                None => fields.push((NoteSection::Subjective, self.preamble.clone())),
            }
        }
        fields
    }

    /// The note as one text with headings (for EHRs that take a single document).
    pub fn as_text(&self) -> String {
        let mut parts = Vec::new();
        if !self.preamble.is_empty() {
            parts.push(self.preamble.clone());
        }
        for section in &self.sections {
            if let Some(spec) = self.template.section(&section.key)
                && !section.text.trim().is_empty()
            {
                parts.push(format!("{}:\n{}", spec.title, section.text.trim()));
            }
        }
        parts.join("\n\n")
    }
}

/// A heading found in the text: which section, where its words begin, where its text begins.
struct Heading {
    section: usize,
    at: usize,
    body: usize,
}

/// Lower-cased words of `text` with their byte spans (letters, digits and apostrophes).
fn words(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let inside = c.is_alphanumeric() || c == '\'';
        match (inside, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((text[s..i].to_lowercase(), s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((text[s..].to_lowercase(), s, text.len()));
    }
    out
}

/// Whether a heading may begin at byte `at`: at the start, or after a sentence end or line
/// break (Whisper closes the sentence before a spoken heading, or starts a new segment).
fn begins_sentence(text: &str, at: usize) -> bool {
    let before = text[..at].trim_end_matches([' ', '\t', '"', '\'']);
    before.is_empty() || before.ends_with(['.', '!', '?', '\n', ':', ';'])
}

/// What follows a heading's words: punctuation (":", ".", ",", "-", "—") or a line end makes
/// it a heading, and the section's text starts after it. Single-letter headings ("S:") need a
/// colon, or the letter "a" would start sections.
fn heading_end(text: &str, end: usize, single_letter: bool) -> Option<usize> {
    let rest = &text[end..];
    let trimmed = rest.trim_start_matches([' ', '\t']);
    let skipped = rest.len() - trimmed.len();
    let mut chars = trimmed.chars();
    let next = chars.next();
    let ok = match next {
        Some(':') => true,
        Some('.' | ',' | '-' | '\u{2014}' | '\u{2013}' | ';') => !single_letter,
        Some('\n') | None => !single_letter,
        _ => false,
    };
    if !ok {
        return None;
    }
    let after = end + skipped + next.map_or(0, char::len_utf8);
    let body = &text[after..];
    Some(
        after
            + (body.len()
                - body
                    .trim_start_matches([' ', '\t', '\n', '-', ':', '.'])
                    .len()),
    )
}

/// The headings of `template` in `text`, in order. At each place the longest heading wins
/// ("plan of care" over "plan"); a section's heading counts once (a second "plan" later is
/// text, as in "Plan: continue the plan.").
fn find_headings(text: &str, template: NoteTemplate) -> Vec<Heading> {
    let specs = template.sections();
    let words = words(text);
    let mut found: Vec<Heading> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let (_, at, _) = words[i];
        let mut best: Option<(usize, usize, usize)> = None; // (section, word count, body)
        if begins_sentence(text, at) {
            for (section, spec) in specs.iter().enumerate() {
                if found.iter().any(|h| h.section == section) {
                    continue;
                }
                for heading in spec.headings {
                    let parts: Vec<&str> = heading.split(' ').collect();
                    let Some(window) = words.get(i..i + parts.len()) else {
                        continue;
                    };
                    if !window.iter().zip(&parts).all(|((w, _, _), p)| w == p) {
                        continue;
                    }
                    let end = window[window.len() - 1].2;
                    let Some(body) = heading_end(text, end, heading.len() == 1) else {
                        continue;
                    };
                    if best.is_none_or(|(_, n, _)| parts.len() > n) {
                        best = Some((section, parts.len(), body));
                    }
                }
            }
        }
        match best {
            Some((section, count, body)) => {
                found.push(Heading { section, at, body });
                i += count;
            }
            None => i += 1,
        }
    }
    found
}

/// Splits a dictation into `template`'s sections at its spoken headings. `None` when no
/// heading was spoken: the transcript stays unstructured.
pub fn split_by_headings(text: &str, template: NoteTemplate) -> Option<StructuredNote> {
    let headings = find_headings(text, template);
    let first = headings.first()?;
    let preamble = text[..first.at].trim().to_owned();
    let specs = template.sections();
    let mut sections: Vec<SectionText> = headings
        .iter()
        .enumerate()
        .map(|(n, h)| {
            let end = headings.get(n + 1).map_or(text.len(), |next| next.at);
            SectionText {
                key: specs[h.section].key.into(),
                text: text[h.body.min(end)..end].trim().to_owned(),
            }
        })
        .collect();
    sections.sort_by_key(|s| specs.iter().position(|spec| spec.key == s.key));
    Some(StructuredNote {
        template,
        sections,
        preamble,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section<'a>(note: &'a StructuredNote, key: &str) -> &'a str {
        note.sections
            .iter()
            .find(|s| s.key == key)
            .map_or("", |s| s.text.as_str())
    }

    #[test]
    fn spoken_headings_split_a_soap_dictation() {
        let text = "Subjective: headache for two days. Objective. Blood pressure 120 over 80. \
                    Assessment, tension headache. Plan: ibuprofen and review the plan in a week.";
        let note = split_by_headings(text, NoteTemplate::Soap).unwrap();
        assert_eq!(section(&note, "subjective"), "headache for two days.");
        assert_eq!(section(&note, "objective"), "Blood pressure 120 over 80.");
        assert_eq!(section(&note, "assessment"), "tension headache.");
        assert_eq!(
            section(&note, "plan"),
            "ibuprofen and review the plan in a week."
        );
        assert!(note.preamble.is_empty());
    }

    #[test]
    fn words_that_are_not_headings_stay_in_the_text() {
        let text = "The patient has a plan to travel. Exam shows nothing.";
        // "plan" mid-sentence is text; "Exam shows" has no punctuation after the heading.
        assert!(split_by_headings(text, NoteTemplate::Soap).is_none());
    }

    #[test]
    fn synonyms_and_the_longest_heading_win() {
        let text = "History of present illness: cough. Physical exam: clear chest. \
                    Impression: viral bronchitis. Plan of care: fluids.";
        let note = split_by_headings(text, NoteTemplate::Soap).unwrap();
        assert_eq!(section(&note, "subjective"), "cough.");
        assert_eq!(section(&note, "objective"), "clear chest.");
        assert_eq!(section(&note, "assessment"), "viral bronchitis.");
        assert_eq!(section(&note, "plan"), "fluids.");
    }

    #[test]
    fn a_template_charts_its_sections_into_soap_fields() {
        let note = StructuredNote::from_parts(
            NoteTemplate::HistoryAndPhysical,
            vec![
                SectionText {
                    key: "plan".into(),
                    text: "rest".into(),
                },
                SectionText {
                    key: "hpi".into(),
                    text: "fell".into(),
                },
                SectionText {
                    key: "allergies".into(),
                    text: "none".into(),
                },
            ],
            String::new(),
        )
        .unwrap();
        let fields = note.soap_fields();
        assert_eq!(
            fields,
            vec![
                (
                    NoteSection::Subjective,
                    "History of present illness: fell\n\nAllergies: none".to_owned()
                ),
                (NoteSection::Plan, "rest".to_owned()),
            ]
        );
        let wrong = StructuredNote::from_parts(
            NoteTemplate::Soap,
            vec![SectionText {
                key: "hpi".into(),
                text: "x".into(),
            }],
            String::new(),
        );
        assert!(matches!(wrong, Err(StructureError::UnknownSection { .. })));
    }

    /// The section-splitting accuracy over the dictation fixtures (varied heading styles as
    /// Whisper writes them): the share of expected sections found with exactly the expected
    /// text, counting every spurious section as a miss. Printed for the README and `make bench`.
    #[test]
    fn sections_are_found_in_the_dictation_fixtures() {
        let fixtures: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../tests/fixtures/dictations/sections.json"
        ))
        .unwrap();
        assert!(fixtures.len() >= 20);
        let (mut right, mut total) = (0usize, 0usize);
        let mut misses = Vec::new();
        for fixture in &fixtures {
            let template: NoteTemplate = fixture["template"].as_str().unwrap().parse().unwrap();
            let text = fixture["text"].as_str().unwrap();
            let expected = fixture["expected"].as_object().unwrap();
            let found = split_by_headings(text, template);
            let found = found.as_ref().map_or(&[][..], |n| n.sections.as_slice());
            total += expected.len()
                + found
                    .iter()
                    .filter(|s| !expected.contains_key(&s.key))
                    .count();
            for (key, want) in expected {
                let got = found
                    .iter()
                    .find(|s| &s.key == key)
                    .map(|s| s.text.as_str());
                if got == want.as_str() {
                    right += 1;
                } else {
                    misses.push(format!("{} / {key}: {got:?}", fixture["name"]));
                }
            }
        }
        let accuracy = right as f64 / total as f64;
        println!(
            "section splitting: {right}/{total} sections right over {} dictations ({:.1} %)",
            fixtures.len(),
            accuracy * 100.0
        );
        for miss in &misses {
            println!("  missed {miss}");
        }
        assert!(accuracy >= 0.9, "{accuracy}: {misses:#?}");
    }
}
