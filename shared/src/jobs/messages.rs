//! What arrives on the transcribe queue: MMT's own jobs, and the object store's notification
//! that a direct upload has landed. The notification is the S3 event format, which S3-compatible
//! stores (MinIO, Ceph, R2) emit as well.

use serde::Deserialize;

use crate::ports::Job;

#[derive(Debug, PartialEq)]
pub enum Incoming {
    Job(Job),
    /// An object was written; `key` as the store names it, `size` in bytes.
    ObjectCreated {
        key: String,
        size: Option<u64>,
    },
    /// A message that needs no work (the store's test event, another kind of object event).
    Ignorable(&'static str),
    Unreadable,
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<NotificationRecord>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
struct NotificationRecord {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: ObjectEntity,
}

#[derive(Deserialize)]
struct ObjectEntity {
    object: ObjectRef,
}

#[derive(Deserialize)]
struct ObjectRef {
    key: String,
    size: Option<u64>,
}

pub fn read_message(body: &str) -> Incoming {
    if let Ok(job) = serde_json::from_str::<Job>(body) {
        return Incoming::Job(job);
    }
    let Ok(notification) = serde_json::from_str::<Notification>(body) else {
        return Incoming::Unreadable;
    };
    if notification.event.as_deref() == Some("s3:TestEvent") {
        return Incoming::Ignorable("storage notification test event");
    }
    // The store sends one record per message.
    match notification.records.as_slice() {
        [record] if record.event_name.starts_with("ObjectCreated:") => Incoming::ObjectCreated {
            key: decode_key(&record.s3.object.key),
            size: record.s3.object.size,
        },
        [_] => Incoming::Ignorable("storage event other than ObjectCreated"),
        _ => Incoming::Unreadable,
    }
}

/// Keys in notifications are URL-encoded, spaces as `+`.
fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match raw.get(i + 1..i + 3).map(|hex| u8::from_str_radix(hex, 16)) {
                    Some(Ok(byte)) => {
                        out.push(byte);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TranscriptionId;

    fn notification(event: &str, key: &str) -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event,
            "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 1234}}
        }]})
        .to_string()
    }

    #[test]
    fn jobs_and_object_events_are_told_apart() {
        let id = TranscriptionId::new();
        let job = Job::Transcribe {
            transcription_id: id,
        };
        assert_eq!(
            read_message(&serde_json::to_string(&job).unwrap()),
            Incoming::Job(job)
        );
        assert_eq!(
            read_message(&notification("ObjectCreated:Put", &format!("audio%2F{id}"))),
            Incoming::ObjectCreated {
                key: format!("audio/{id}"),
                size: Some(1234)
            }
        );
        assert!(matches!(
            read_message(&notification("ObjectRemoved:Delete", "audio/x")),
            Incoming::Ignorable(_)
        ));
        assert!(matches!(
            read_message(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#),
            Incoming::Ignorable(_)
        ));
        assert_eq!(read_message("not json"), Incoming::Unreadable);
        assert_eq!(read_message(r#"{"Records":[]}"#), Incoming::Unreadable);
    }

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(decode_key("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
