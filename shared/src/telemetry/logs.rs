//! One JSON object per line, the shape CloudWatch Logs Insights and most log pipelines query
//! without parsing rules: the event's own fields at the top level beside `level`, `target`,
//! `message`, the fields of every span it happened in (so the request's `correlation_id` is on
//! the worker's lines too), `function`, and the Lambda request id as `aws_request_id`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormattedFields,
        format::{JsonFields, Writer},
    },
    registry::LookupSpan,
};

/// What the Lambda runtime names its per-invocation span field, and what the line calls it.
const LAMBDA_REQUEST_ID: (&str, &str) = ("requestId", "aws_request_id");

pub struct JsonLines {
    pub function: String,
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("function".into(), self.function.clone().into());
        if let Some(scope) = ctx.event_scope() {
            // Outermost first, so a field of an inner span wins over the same field outside.
            for span in scope.from_root() {
                line.insert("span".into(), span.name().into());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (key, value) in fields {
                        let key = if key == LAMBDA_REQUEST_ID.0 {
                            LAMBDA_REQUEST_ID.1.to_owned()
                        } else {
                            key
                        };
                        line.insert(key, value);
                    }
                }
            }
        }
        event.record(&mut FieldsInto(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct FieldsInto<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for FieldsInto<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), super::error_chain(value).into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::{fmt::MakeWriter, prelude::*};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn each_event_is_one_object_with_the_fields_of_its_spans() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonLines {
                    function: "mmt-prod-transcribe".into(),
                })
                .with_writer(captured.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let invoke = tracing::info_span!("Lambda runtime invoke", requestId = "req-7");
            let _invoke = invoke.enter();
            let job = tracing::info_span!("job", correlation_id = "corr-1", queue = "transcribe");
            let _job = job.enter();
            let inner = tracing::info_span!("engine", queue = "inner wins");
            let _inner = inner.enter();
            tracing::warn!(attempt = 2u64, ratio = 0.5, "engine slow\nsecond line");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one line per event, newlines escaped: {text}"
        );
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "engine slow\nsecond line");
        assert_eq!(line["function"], "mmt-prod-transcribe");
        assert_eq!(line["aws_request_id"], "req-7");
        assert_eq!(line["correlation_id"], "corr-1");
        assert_eq!(line["queue"], "inner wins");
        assert_eq!(line["span"], "engine");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["ratio"], 0.5);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
