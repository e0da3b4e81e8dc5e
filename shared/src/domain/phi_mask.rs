//! Masking what identifies a patient in a transcript shown on a screen: names after a title or
//! an introduction, dates, phone numbers, street addresses and ZIP codes, record numbers and
//! other long identifiers. Only for display and download: what is stored, and what goes to the
//! EHR, is the transcript as spoken.
//!
//! Rules, not a model: they catch the forms a dictation takes ("Mrs. Ortega", "date of birth
//! March 3rd, 1956", "MRN 448812", "call 555-201-7788", "12 Elm Street"), and they miss a bare
//! name without a title or an introduction ("Valentina said…"). The README says so.

use std::sync::LazyLock;

use regex::Regex;

use super::{SectionText, Segment, StructuredNote, Transcript, TranscriptVersion};

/// What replaces each kind of identifier (names and labelled values keep their label, with
/// `[NAME]` or `[ID]` after it).
const DATE: &str = "[DATE]";
const PHONE: &str = "[PHONE]";
const ADDRESS: &str = "[ADDRESS]";
const ID: &str = "[ID]";

const MONTH: &str = "(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|\
                     aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";

struct Rule {
    pattern: Regex,
    /// What a match becomes; `$label` keeps a captured label in front.
    replacement: &'static str,
}

fn rule(pattern: &str, replacement: &'static str) -> Rule {
    Rule {
        pattern: Regex::new(pattern).expect("a valid masking pattern"),
        replacement,
    }
}

/// In order: the specific forms first, so a record number is not half taken for a phone.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // Social security numbers.
        rule(r"\b\d{3}-\d{2}-\d{4}\b", ID),
        // A labelled identifier keeps its label: "MRN 448812" → "MRN [ID]".
        rule(
            r"(?i)(?P<label>\b(?:mrn|medical record(?: number)?|record (?:number|no\.?)|patient (?:id|number)|chart (?:number|no\.?)|account (?:number|no\.?)|(?:insurance|member|policy) (?:id|number)|ssn|social security number)(?:\s+is|\s*[:#])?\s*)[a-z]{0,3}[-\s]?\d[\d-]{2,}",
            "${label}[ID]",
        ),
        // Phone numbers: (555) 201-7788, 555-201-7788, 555.201.7788, +1 555 201 7788.
        rule(
            r"(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b",
            PHONE,
        ),
        // Dates: 03/14/2024, 14.03.24, 2024-03-14, March 14th, 2024, 14 March 2024.
        rule(r"\b\d{4}-\d{1,2}-\d{1,2}\b", DATE),
        rule(r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b", DATE),
        rule(
            &format!(r"(?i)\b{MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+(?:19|20)\d{{2}})?\b"),
            DATE,
        ),
        rule(
            &format!(
                r"(?i)\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTH}\b(?:,?\s+(?:19|20)\d{{2}})?"
            ),
            DATE,
        ),
        // A year said as a birth year: "born in 1956".
        rule(
            r"(?i)(?P<label>\bborn in\s+)(?:19|20)\d{2}\b",
            "${label}[DATE]",
        ),
        // Street addresses, and ZIP codes.
        rule(
            r"\b\d{1,6}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Circle|Parkway|Highway|Hwy)\b\.?",
            ADDRESS,
        ),
        rule(r"\b\d{5}(?:-\d{4})?\b", ADDRESS),
        // Any other long number is an identifier of some kind.
        rule(r"\b\d{6,}\b", ID),
        // Names after a title keep the title: "Mrs. Ortega" → "Mrs. [NAME]".
        rule(
            r"(?P<label>\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Doctor|Prof|Professor|Nurse)\.?\s+)[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+)?",
            "${label}[NAME]",
        ),
        // Names after an introduction: "the patient is Valentina Ortega", "my name is …".
        rule(
            r"(?P<label>\b(?:[Pp]atient(?:'s name)? is|[Pp]atient named|[Nn]ame is|[Nn]amed|[Tt]his is|[Ss]peaking with|[Ss]een with)\s+)[A-Z][A-Za-z'-]+(?:\s+[A-Z][A-Za-z'-]+){0,2}",
            "${label}[NAME]",
        ),
    ]
});

/// Where identifiers lie in `text`, and what each becomes: byte ranges, in order, never
/// overlapping (an earlier rule's match wins over a later one's).
fn identifiers(text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut found: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for rule in RULES.iter() {
        for caps in rule.pattern.captures_iter(text) {
            let range = caps.get(0).expect("the whole match").range();
            if found
                .iter()
                .any(|(taken, _)| taken.start < range.end && range.start < taken.end)
            {
                continue;
            }
            let mut replacement = String::new();
            caps.expand(rule.replacement, &mut replacement);
            found.push((range, replacement));
        }
    }
    found.sort_by_key(|(range, _)| range.start);
    found
}

/// `text` with every identifier the rules recognise replaced by its kind.
pub fn mask_phi(text: &str) -> String {
    masked_part(text, &identifiers(text), 0..text.len())
}

/// The part `part` of `text`, masked: an identifier that starts in it is replaced there; the
/// rest of one that started earlier is left out.
fn masked_part(
    text: &str,
    identifiers: &[(std::ops::Range<usize>, String)],
    part: std::ops::Range<usize>,
) -> String {
    let mut out = String::new();
    let mut at = part.start;
    for (range, replacement) in identifiers {
        if range.end <= part.start || range.start >= part.end {
            continue;
        }
        if range.start >= at {
            out.push_str(&text[at..range.start]);
            out.push_str(replacement);
        }
        at = at.max(range.end.min(part.end));
    }
    out.push_str(&text[at..part.end]);
    out
}

impl Transcript {
    /// The transcript for display with identifiers masked: text and segments; the decoded
    /// tokens are left out (each one is a piece of what was said). The segments are masked as
    /// one text, so a name split from its title by a segment boundary ("Mrs." | "Ortega") is
    /// still found.
    pub fn masked(&self) -> Transcript {
        let joined: String = self.segments.iter().map(|s| s.text.as_str()).collect();
        let found = identifiers(&joined);
        let mut start = 0;
        let segments = self
            .segments
            .iter()
            .map(|s| {
                let part = start..start + s.text.len();
                start = part.end;
                Segment {
                    start: s.start,
                    end: s.end,
                    text: masked_part(&joined, &found, part),
                    token_scores: Vec::new(),
                }
            })
            .collect();
        Transcript {
            text: mask_phi(&self.text),
            segments,
            note: self.note.as_ref().map(StructuredNote::masked),
            earlier: self
                .earlier
                .iter()
                .map(|v| TranscriptVersion {
                    revision: v.revision.clone(),
                    text: mask_phi(&v.text),
                    segments: Vec::new(),
                    note: v.note.as_ref().map(StructuredNote::masked),
                })
                .collect(),
            ..self.clone()
        }
    }
}

impl StructuredNote {
    /// The sections with identifiers masked.
    pub fn masked(&self) -> StructuredNote {
        StructuredNote {
            template: self.template,
            sections: self
                .sections
                .iter()
                .map(|s| SectionText {
                    key: s.key.clone(),
                    text: mask_phi(&s.text),
                })
                .collect(),
            preamble: mask_phi(&self.preamble),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_identifier_is_masked_and_the_clinical_words_are_kept() {
        let cases = [
            (
                "Mrs. Valentina Ortega was seen today for her seizures.",
                "Mrs. [NAME] was seen today for her seizures.",
            ),
            (
                "The patient is Valentina Ortega, born on March 3rd, 1956.",
                "The patient is [NAME], born on [DATE].",
            ),
            ("Date of birth 03/14/1956.", "Date of birth [DATE]."),
            (
                "Next visit 2024-11-02 with Dr. Ashby.",
                "Next visit [DATE] with Dr. [NAME].",
            ),
            (
                "She was admitted on 14 March 2024.",
                "She was admitted on [DATE].",
            ),
            ("Her MRN is 448812.", "Her MRN is [ID]."),
            (
                "Medical record number: AB-99812.",
                "Medical record number: [ID].",
            ),
            (
                "Call her at (555) 201-7788 or 555.201.7788.",
                "Call her at [PHONE] or [PHONE].",
            ),
            ("Her number is +1 555 201 7788.", "Her number is [PHONE]."),
            (
                "She lives at 12 Elm Street, Springfield 62704.",
                "She lives at [ADDRESS], Springfield [ADDRESS].",
            ),
            ("SSN 123-45-6789 on file.", "SSN [ID] on file."),
            ("Born in 1956, she smokes.", "Born in [DATE], she smokes."),
            (
                "Reference 88219934 in the letter.",
                "Reference [ID] in the letter.",
            ),
        ];
        for (spoken, shown) in cases {
            assert_eq!(mask_phi(spoken), shown, "{spoken}");
        }
    }

    #[test]
    fn doses_times_and_ordinary_words_are_left_alone() {
        for text in [
            "Metformin 500 mg twice a day for 3 months.",
            "Blood pressure 120/80, pulse 72, temperature 37.2.",
            "She may come back in two weeks.",
            "Follow up at 10:30 with the team.",
            "The patient reports less pain since Monday.",
        ] {
            assert_eq!(mask_phi(text), text);
        }
    }

    #[test]
    fn a_masked_transcript_keeps_its_timing_and_drops_its_tokens() {
        let mut segment = Segment::new(1.0, 2.5, "Mr. Ashby, MRN 448812.");
        segment.token_scores.push(super::super::TokenScore {
            text: " Ashby".into(),
            start: 1.2,
            end: 1.6,
            logprob: -0.1,
        });
        let transcript = Transcript {
            text: "Mr. Ashby, MRN 448812.".into(),
            segments: vec![segment],
            language: Some("en".into()),
            language_probability: None,
            duration_s: Some(2.5),
            ..Default::default()
        };
        let masked = transcript.masked();
        assert_eq!(masked.text, "Mr. [NAME], MRN [ID].");
        assert_eq!(masked.segments[0].text, "Mr. [NAME], MRN [ID].");
        assert_eq!(
            (masked.segments[0].start, masked.segments[0].end),
            (1.0, 2.5)
        );
        assert!(masked.segments[0].token_scores.is_empty());
        assert_eq!(masked.duration_s, transcript.duration_s);
    }

    #[test]
    fn a_name_split_from_its_title_by_a_segment_boundary_is_still_masked() {
        let transcript = Transcript {
            text: "Mrs. Valentina Ortega, MRN 448812.".into(),
            segments: vec![
                Segment::new(0.0, 0.7, " Mrs."),
                Segment::new(0.7, 1.5, " Valentina Ortega, MRN"),
                Segment::new(1.5, 2.0, " 448812."),
            ],
            language: None,
            language_probability: None,
            duration_s: Some(2.0),
            ..Default::default()
        };
        let texts: Vec<String> = transcript
            .masked()
            .segments
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(texts, [" Mrs. [NAME]", ", MRN [ID]", "."]);
    }
}
