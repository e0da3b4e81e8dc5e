//! Pushing a transcript into an electronic health record: what is sent, and what came back.
//! Names no vendor: the adapters (`adapters::openemr`) map this onto an EHR's API.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use super::{OwnerId, TranscriptionId};

/// The most bytes one note field takes: OpenEMR validates each SOAP field with
/// `lengthBetween(2, 65535)`, which counts bytes (PHP `strlen`), not characters.
pub const MAX_NOTE_BYTES: usize = 65_535;

/// The fewest bytes OpenEMR accepts in a SOAP field it is given.
pub const MIN_NOTE_BYTES: usize = 2;

/// Which part of a SOAP note the transcript goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteSection {
    Subjective,
    Objective,
    Assessment,
    Plan,
}

impl NoteSection {
    pub const ALL: [NoteSection; 4] = [
        Self::Subjective,
        Self::Objective,
        Self::Assessment,
        Self::Plan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subjective => "subjective",
            Self::Objective => "objective",
            Self::Assessment => "assessment",
            Self::Plan => "plan",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Subjective => "Subjective",
            Self::Objective => "Objective",
            Self::Assessment => "Assessment",
            Self::Plan => "Plan",
        }
    }
}

impl FromStr for NoteSection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "subjective" => Ok(Self::Subjective),
            "objective" => Ok(Self::Objective),
            "assessment" => Ok(Self::Assessment),
            "plan" => Ok(Self::Plan),
            _ => Err("expected subjective, objective, assessment or plan".into()),
        }
    }
}

impl fmt::Display for NoteSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose EHR login a call uses: the deployment's one service login, or a clinician's own
/// (linked once through the EHR's sign-in), so that the EHR records them as the author and
/// applies their own permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EhrLogin {
    Shared,
    Clinician(OwnerId),
}

impl EhrLogin {
    /// The name of this login's refresh token in the connection store: `base` for the shared
    /// login, `base:<owner>` for a clinician's.
    pub fn connection(&self, base: &str) -> String {
        match self {
            Self::Shared => base.to_owned(),
            Self::Clinician(owner) => format!("{base}:{owner}"),
        }
    }
}

/// One note to write: where, what, and the marker that identifies it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct NoteDelivery {
    /// The delivery this note belongs to (MMT's outbox id).
    pub delivery_id: uuid::Uuid,
    pub transcription_id: TranscriptionId,
    /// The EHR's patient id as the client gave it (a uuid, or a numeric id).
    pub patient_ref: String,
    /// The EHR's encounter id as the client gave it.
    pub encounter_ref: String,
    /// The note's text by SOAP field, in field order, each within [`MAX_NOTE_BYTES`]; the last
    /// ends with the marker. Never empty.
    pub fields: Vec<(NoteSection, String)>,
    /// Found in the text of a note MMT wrote: lets a retry find a note an earlier attempt
    /// wrote before its answer was lost.
    pub marker: String,
    /// Look for the marker before writing (every attempt after the first).
    pub check_existing: bool,
    /// Whose login writes it.
    pub login: EhrLogin,
}

impl NoteDelivery {
    /// The note as one text, each field under its name when there are several (for EHRs that
    /// take a single document).
    pub fn as_text(&self) -> String {
        match self.fields.as_slice() {
            [(_, only)] => only.clone(),
            fields => fields
                .iter()
                .map(|(section, text)| format!("{}:\n{text}", section.title()))
                .collect::<Vec<_>>()
                .join("\n\n"),
        }
    }
}

/// The marker MMT puts in every note it writes for a delivery.
pub fn delivery_marker(delivery_id: &str) -> String {
    format!("[MMT delivery {delivery_id}]")
}

/// Why a note cannot be written at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the transcript is empty: there is nothing to put in the chart")]
    Empty,
}

/// The longest prefix of `text` within `max` bytes that ends on a character boundary.
fn cut_at_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The fields of a note: each trimmed and cut at [`MAX_NOTE_BYTES`] with a clear notice when
/// longer; fields too short for the EHR are left out; the marker goes on its own last line of
/// the last field. An empty transcript is an error, never an empty note.
pub fn note_fields(
    content: &[(NoteSection, String)],
    transcription: &TranscriptionId,
    marker: &str,
) -> Result<Vec<(NoteSection, String)>, NoteError> {
    let mut fields: Vec<(NoteSection, String)> = content
        .iter()
        .map(|(section, text)| (*section, text.trim().to_owned()))
        .filter(|(_, text)| text.len() >= MIN_NOTE_BYTES)
        .collect();
    let last = fields.len().checked_sub(1).ok_or(NoteError::Empty)?;
    for (n, (_, text)) in fields.iter_mut().enumerate() {
        let footer = if n == last {
            format!("\n\n{marker}")
        } else {
            String::new()
        };
        let room = MAX_NOTE_BYTES - footer.len();
        if text.len() > room {
            let notice = format!(
                "\n\n[Cut by MMT at {MAX_NOTE_BYTES} bytes, the EHR's limit; the full text is transcription {transcription}.]"
            );
            let kept = cut_at_bytes(text, room - notice.len()).to_owned();
            *text = format!("{kept}{notice}");
        }
        text.push_str(&footer);
    }
    Ok(fields)
}

/// The most patients a search returns: a picker shows a handful, never the directory.
pub const MAX_PATIENT_RESULTS: usize = 20;

/// What a clinician typed to find a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientQuery {
    /// Words that begin a name part ("ort", "Valentina Ort"), lower-cased.
    Name(Vec<String>),
    /// `YYYY-MM-DD`.
    BirthDate(String),
    /// The record number the clinic uses (OpenEMR's `pubpid`).
    RecordNumber(String),
}

impl PatientQuery {
    /// Reads a search box: a date is a birth date, anything with a digit a record number,
    /// else name words (each at least 2 letters).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let q = raw.trim();
        if q.is_empty() || q.len() > 64 {
            return Err("q must be 1 to 64 characters: a name, a birth date (YYYY-MM-DD) or a record number".into());
        }
        if chrono::NaiveDate::parse_from_str(q, "%Y-%m-%d").is_ok() {
            return Ok(Self::BirthDate(q.to_owned()));
        }
        if q.chars().any(|c| c.is_ascii_digit()) {
            return if q.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(Self::RecordNumber(q.to_owned()))
            } else {
                Err("a record number has letters, digits and '-' only".into())
            };
        }
        let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
        let valid = |w: &String| {
            w.chars().count() >= 2
                && w.chars()
                    .all(|c| c.is_alphabetic() || c == '-' || c == '\'' || c == '.')
        };
        if words.iter().all(valid) {
            Ok(Self::Name(words))
        } else {
            Err("type at least 2 letters of a name".into())
        }
    }

    /// Whether a patient's name parts match every word (each word begins some part).
    pub fn matches_name(&self, parts: &[&str]) -> bool {
        match self {
            Self::Name(words) => words.iter().all(|w| {
                parts
                    .iter()
                    .flat_map(|p| p.split_whitespace())
                    .any(|part| part.to_lowercase().starts_with(w.as_str()))
            }),
            _ => true,
        }
    }
}

/// A patient as a picker shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatientSummary {
    /// The EHR's id for the push (OpenEMR: the patient uuid).
    pub id: String,
    /// "Family, Given".
    pub name: String,
    pub birth_date: Option<String>,
    pub record_number: Option<String>,
}

/// An encounter as a picker shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EncounterSummary {
    /// The EHR's id for the push (OpenEMR: the encounter uuid).
    pub id: String,
    /// The encounter's number where the EHR has one (OpenEMR's `eid`).
    pub number: Option<String>,
    /// When it took place (`YYYY-MM-DD` or a date-time).
    pub date: Option<String>,
    pub reason: Option<String>,
}

/// Newest first (dates as the EHR writes them sort as text), then the highest number.
pub fn newest_first(encounters: &mut [EncounterSummary]) {
    encounters.sort_by(|a, b| {
        b.date.cmp(&a.date).then_with(|| {
            let n = |e: &EncounterSummary| e.number.as_deref().and_then(|n| n.parse::<u64>().ok());
            n(b).cmp(&n(a))
        })
    });
}

/// What the EHR answered for a note it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EhrReceipt {
    /// The EHR's id of the note (OpenEMR: the SOAP note's `sid`).
    pub note_id: String,
    /// The EHR's id of the form or resource holding it (OpenEMR: `fid`), when it gives one.
    pub form_id: Option<String>,
    /// `true` when a retry found the note an earlier attempt had written.
    pub found_existing: bool,
}

/// Why a push did not (yet) succeed. Reasons never carry note text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EhrError {
    /// Worth retrying: connection errors, timeouts, 429 and 5xx.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help: the EHR refused the request (4xx other than 401/429), or the
    /// patient and encounter do not match.
    #[error("{0}")]
    Permanent(String),
    /// The EHR connection's login is no longer valid: an administrator must sign in again.
    #[error("{0}")]
    NeedsLogin(String),
}

/// Where a delivery is. `Delivered` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown delivery status {other:?}")),
        }
    }
}

/// One request to put a transcript into an EHR, and what became of it: the outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct EhrDelivery {
    /// A UUIDv7; also the marker MMT writes into the note.
    pub id: uuid::Uuid,
    pub transcription_id: TranscriptionId,
    pub owner: OwnerId,
    /// Which EHR connection (`openemr`).
    pub target: String,
    /// The EHR's patient id as given. PHI: sealed at rest with field encryption.
    pub patient_ref: String,
    /// The EHR's encounter id as given. PHI: sealed at rest with field encryption.
    pub encounter_ref: String,
    pub section: NoteSection,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub receipt: Option<EhrReceipt>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EhrDelivery {
    pub fn new_pending(
        transcription_id: TranscriptionId,
        owner: OwnerId,
        target: &str,
        patient_ref: String,
        encounter_ref: String,
        section: NoteSection,
        now: DateTime<Utc>,
    ) -> Self {
        let now = chrono::SubsecRound::trunc_subsecs(now, 6);
        Self {
            id: uuid::Uuid::now_v7(),
            transcription_id,
            owner,
            target: target.to_owned(),
            patient_ref,
            encounter_ref,
            section,
            status: DeliveryStatus::Pending,
            attempts: 0,
            receipt: None,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether this delivery already covers a push of the same transcript to the same place:
    /// then a second request returns it instead of writing a second note.
    pub fn covers(&self, target: &str, patient_ref: &str, encounter_ref: &str) -> bool {
        self.status != DeliveryStatus::Failed
            && self.target == target
            && self.patient_ref == patient_ref
            && self.encounter_ref == encounter_ref
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_transcripts_are_cut_in_bytes_with_a_notice_and_keep_the_marker() {
        let id = TranscriptionId::new();
        let marker = delivery_marker("d1");
        let one = |text: &str| vec![(NoteSection::Subjective, text.to_owned())];
        let short = note_fields(&one("  Patient is well.  "), &id, &marker).unwrap();
        assert_eq!(short[0].1, format!("Patient is well.\n\n{marker}"));

        // Two bytes a character: 40,000 characters are 80,000 bytes, over the limit.
        let long = "é".repeat(40_000);
        let text = &note_fields(&one(&long), &id, &marker).unwrap()[0].1;
        assert!(text.len() <= MAX_NOTE_BYTES, "{} bytes", text.len());
        assert!(text.len() > MAX_NOTE_BYTES - 200, "uses the room it has");
        assert!(text.ends_with(&marker));
        assert!(text.contains("Cut by MMT") && text.contains(&id.to_string()));
        // Exactly at the limit: kept whole.
        let room = MAX_NOTE_BYTES - format!("\n\n{marker}").len();
        let exact = "a".repeat(room);
        assert!(
            !note_fields(&one(&exact), &id, &marker).unwrap()[0]
                .1
                .contains("Cut by")
        );
        assert!(
            note_fields(&one(&format!("{exact}b")), &id, &marker).unwrap()[0]
                .1
                .contains("Cut by")
        );
    }

    #[test]
    fn a_search_box_is_read_as_a_name_a_birth_date_or_a_record_number() {
        assert_eq!(
            PatientQuery::parse(" Ort "),
            Ok(PatientQuery::Name(vec!["ort".into()]))
        );
        assert_eq!(
            PatientQuery::parse("1984-03-02"),
            Ok(PatientQuery::BirthDate("1984-03-02".into()))
        );
        assert_eq!(
            PatientQuery::parse("MRN-1042"),
            Ok(PatientQuery::RecordNumber("MRN-1042".into()))
        );
        for bad in ["", "a", "x'; drop", "1984-13-45 or 1=1", &"z".repeat(65)] {
            assert!(PatientQuery::parse(bad).is_err(), "{bad:?}");
        }
        let q = PatientQuery::parse("val ort").unwrap();
        assert!(q.matches_name(&["Ortega", "Valentina"]));
        assert!(!q.matches_name(&["Ortega", "Maria"]));
    }

    #[test]
    fn an_empty_transcript_is_not_a_note_and_short_fields_are_left_out() {
        let id = TranscriptionId::new();
        let marker = delivery_marker("d1");
        assert_eq!(
            note_fields(&[(NoteSection::Plan, "  \n ".into())], &id, &marker),
            Err(NoteError::Empty)
        );
        let fields = note_fields(
            &[
                (NoteSection::Subjective, "Cough.".into()),
                (NoteSection::Objective, "x".into()),
                (NoteSection::Plan, "Rest.".into()),
            ],
            &id,
            &marker,
        )
        .unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], (NoteSection::Subjective, "Cough.".into()));
        assert!(fields[1].1.ends_with(&marker));
    }
}
