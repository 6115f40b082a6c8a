//! `synctrail send FILE|-`: one envelope per line, sent as it is to the ingest queue in batches of 10 (a file holding
//! one SQS event, as the samples in `events/` are: its records' bodies).

use super::Context;
use crate::args::SendArgs;
use crate::error::CliError;
use crate::output::write_json;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use synctrail::store::{OutgoingMessage, Queue, StoreError};

/// Messages per `Queue::send` call (the SQS batch limit).
pub const SEND_BATCH: usize = 10;

/// What `send` did.
#[derive(Debug, Clone, Serialize)]
pub struct SendReport {
    /// Messages sent.
    pub sent: u64,
    /// Blank lines skipped.
    pub skipped_blank: u64,
}

/// Sends every non-blank line of `lines` as one message, in batches of [`SEND_BATCH`]; `on_batch` is told how
/// many were sent after each batch. Malformed lines are sent too: the pipeline rejects and archives them.
pub async fn send_lines<I>(queue: &dyn Queue, lines: I, mut on_batch: impl FnMut(u64)) -> Result<SendReport, StoreError>
where
    I: IntoIterator<Item = String>,
{
    let mut report = SendReport { sent: 0, skipped_blank: 0 };
    let mut batch = Vec::with_capacity(SEND_BATCH);
    for line in lines {
        if line.trim().is_empty() {
            report.skipped_blank += 1;
            continue;
        }
        batch.push(OutgoingMessage::new(line));
        if batch.len() == SEND_BATCH {
            report.sent += send_batch(queue, &mut batch).await?;
            on_batch(report.sent);
        }
    }
    report.sent += send_batch(queue, &mut batch).await?;
    on_batch(report.sent);
    Ok(report)
}

async fn send_batch(queue: &dyn Queue, batch: &mut Vec<OutgoingMessage>) -> Result<u64, StoreError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let messages = std::mem::take(batch);
    let n = messages.len() as u64;
    queue.send(messages).await?;
    Ok(n)
}

/// Reads lines of `reader`; the line terminator (`\n` or `\r\n`) and a byte-order mark before the first line are
/// removed, everything else is kept.
/// Bytes that are not UTF-8 are replaced (an SQS body must be text).
pub fn read_lines(reader: impl Read) -> impl Iterator<Item = std::io::Result<String>> {
    let mut reader = BufReader::new(reader);
    let mut first = true;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                // A byte-order mark some editors write at the start of a file is not part of the first envelope.
                if std::mem::take(&mut first) && buf.starts_with(b"\xEF\xBB\xBF") {
                    buf.drain(..3);
                }
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                Some(Ok(String::from_utf8_lossy(&buf).into_owned()))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

/// The bodies of the records of an SQS event (`{"Records": [{"body": …}, …]}`, as Lambda hands one to the
/// processor and as the samples in `events/` are), or `None` when `text` is not one.
pub fn sqs_event_bodies(text: &[u8]) -> Option<Vec<String>> {
    let event: serde_json::Value = serde_json::from_slice(text).ok()?;
    let records = event.get("Records")?.as_array()?;
    records.iter().map(|r| r.get("body")?.as_str().map(str::to_owned)).collect()
}

/// Runs `synctrail send`: a file holding one SQS event sends its records' bodies; anything else, its lines.
pub async fn execute(ctx: &Context, args: &SendArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open().await?;
    let input: Box<dyn Iterator<Item = std::io::Result<String>>> = if args.file == "-" {
        Box::new(read_lines(std::io::stdin()))
    } else {
        let read = |source| CliError::Read { path: args.file.clone(), source };
        let bytes = std::fs::read(&args.file).map_err(read)?;
        match sqs_event_bodies(&bytes) {
            Some(bodies) => Box::new(bodies.into_iter().map(Ok)),
            None => Box::new(read_lines(std::io::Cursor::new(bytes))),
        }
    };
    let mut read_error = None;
    let lines = input.map_while(|line| match line {
        Ok(line) => Some(line),
        Err(e) => {
            read_error = Some(e);
            None
        }
    });
    let progress = crate::progress::bar(None, "messages sent", ctx.json);
    let report = send_lines(backend.ports.queue.as_ref(), lines, |n| progress.set_position(n))
        .await
        .map_err(CliError::store("sending messages to the queue"))?;
    progress.finish_and_clear();
    if let Some(source) = read_error {
        // What was read before the error is sent; say so, then fail.
        writeln!(out, "sent {} messages before the input failed", report.sent)?;
        return Err(CliError::Read { path: args.file.clone(), source });
    }
    if ctx.json {
        return write_json(out, &report);
    }
    writeln!(
        out,
        "sent {} message(s) to the queue of {} (skipped {} blank line(s)); process them with `synctrail run`",
        report.sent,
        backend.describe(),
        report.skipped_blank
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_before_the_first_line_is_not_part_of_it() {
        let input = "\u{FEFF}{\"a\":1}\n\u{FEFF}second";
        let lines: Vec<String> = read_lines(input.as_bytes()).filter_map(Result::ok).collect();
        assert_eq!(lines, vec!["{\"a\":1}", "\u{FEFF}second"], "only at the start of the input");
    }

    #[test]
    fn the_sample_sqs_events_send_their_records_bodies_and_ndjson_is_not_one() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        for sample in ["sqs-envelopes.json", "sqs-out-of-order.json", "sqs-malformed.json"] {
            let text = std::fs::read(dir.join(sample)).expect("sample");
            let event: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
            let bodies = sqs_event_bodies(&text).unwrap_or_else(|| panic!("{sample} is an SQS event"));
            let expected: Vec<&str> =
                event["Records"].as_array().expect("records").iter().filter_map(|r| r["body"].as_str()).collect();
            assert_eq!(bodies, expected, "{sample}");
        }
        let ndjson = b"{\"source\":\"github\"}\n{\"source\":\"shopify\"}\n";
        assert_eq!(sqs_event_bodies(ndjson), None);
        assert_eq!(sqs_event_bodies(b"{\"Records\": [{\"no\": \"body\"}]}"), None);
    }

    #[test]
    fn lines_keep_their_content_and_lose_only_the_terminator() {
        let input = "{\"a\":1}\r\n\n  \nnot json\n{\"b\":2}";
        let lines: Vec<String> = read_lines(input.as_bytes()).filter_map(Result::ok).collect();
        assert_eq!(lines, vec!["{\"a\":1}", "", "  ", "not json", "{\"b\":2}"]);
    }
}
