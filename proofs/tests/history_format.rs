//! The JSON-lines history format: parsing, line-numbered errors, and whole-file checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use fleet_proofs::history::{check_kv_history_file, decode_hex, encode_hex, parse_kv_history, HistoryError, Verdict};
use fleet_proofs::spec::kv::{KvOp, KvRet};
use fleet_proofs::Budget;

fn write_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-proofs-{name}.jsonl"));
    std::fs::write(&path, text).unwrap();
    path
}

fn line(
    client: u64,
    op: &str,
    value: Option<&str>,
    times: (u64, Option<u64>),
    result: Option<&str>,
    status: &str,
) -> String {
    let q = |s: Option<&str>| s.map_or("null".to_string(), |s| format!("\"{s}\""));
    let done = times.1.map_or("null".to_string(), |t| t.to_string());
    format!(
        r#"{{"client":{client},"op":"{op}","key":5,"value":{},"invoke_us":{},"complete_us":{done},"result":{},"status":"{status}"}}"#,
        q(value),
        times.0,
        q(result)
    )
}

#[test]
fn hex_round_trip() {
    assert_eq!(encode_hex(&[0, 0xab, 0xFF]), "00abff");
    assert_eq!(decode_hex("00ABff").unwrap(), vec![0, 0xab, 0xff]);
    assert!(decode_hex("abc").is_err());
    assert!(decode_hex("zz").is_err());
}

#[test]
fn parses_statuses_and_drops_what_constrains_nothing() {
    let text = [
        line(1, "set", Some("cafe"), (0, Some(10)), None, "ok"),
        String::new(),
        line(2, "get", None, (20, Some(30)), Some("cafe"), "ok"),
        line(3, "set", Some("01"), (40, None), None, "fail"),
        line(4, "del", None, (50, Some(900)), None, "timeout"),
        line(5, "get", None, (60, None), None, "timeout"),
        line(6, "set", None, (70, Some(80)), Some("ok"), "ok"),
    ]
    .join("\n");
    let h = parse_kv_history(text.as_bytes()).unwrap();
    assert_eq!(h.lines, vec![1, 3, 5, 7]);
    assert_eq!(
        (h.stats.records, h.stats.ok, h.stats.failed, h.stats.pending_writes, h.stats.pending_reads),
        (6, 3, 1, 1, 1)
    );
    assert_eq!(h.operations[0].op, KvOp::Set(5, vec![0xca, 0xfe]));
    assert_eq!(h.operations[1].complete, Some((30, KvRet::Value(Some(vec![0xca, 0xfe])))));
    assert_eq!(h.operations[2].op, KvOp::Delete(5));
    assert_eq!(h.operations[2].complete, None);
    assert_eq!(h.operations[3].op, KvOp::Delete(5), "a set of null deletes");
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("not json", "line 2"),
        (r#"{"client":1,"op":"put","key":1,"invoke_us":0,"status":"ok"}"#, "line 2"),
        (&line(1, "get", None, (0, None), None, "ok"), "complete_us"),
        (&line(1, "get", None, (10, Some(5)), None, "ok"), "before invoke_us"),
        (&line(1, "set", Some("xyz"), (0, Some(5)), None, "ok"), "value"),
        (&line(1, "get", Some("00"), (0, Some(5)), None, "ok"), "null value"),
        (&line(1, "get", None, (0, Some(5)), Some("0g"), "ok"), "result"),
        (&line(1, "set", Some("00"), (0, Some(5)), Some("00"), "ok"), "result of a write"),
    ];
    for (bad, needle) in cases {
        let text = format!("{}\n{bad}\n", line(1, "set", Some("00"), (0, Some(1)), None, "ok"));
        match parse_kv_history(text.as_bytes()) {
            Err(e @ HistoryError::Line { line: 2, .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("line 2: ") && msg.contains(needle), "{msg:?} lacks {needle:?}");
            }
            other => panic!("{bad}: expected a line-2 error, got {other:?}"),
        }
    }
}

#[test]
fn file_check_accepts_a_linearizable_history() {
    let text = [
        line(1, "set", Some("01"), (0, Some(10)), None, "ok"),
        line(2, "set", Some("02"), (5, None), None, "timeout"),
        line(3, "get", None, (20, Some(30)), Some("01"), "ok"),
        line(3, "get", None, (40, Some(50)), Some("02"), "ok"),
        line(1, "set", Some("03"), (60, Some(70)), None, "fail"),
        line(1, "del", None, (80, Some(90)), None, "ok"),
        line(3, "get", None, (100, Some(110)), None, "ok"),
    ]
    .join("\n");
    let report = check_kv_history_file(write_file("good", &text), &Budget::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::Linearizable, "{report}");
}

#[test]
fn file_check_rejects_a_read_of_a_failed_write() {
    let text = [
        line(1, "set", Some("01"), (0, Some(10)), None, "ok"),
        line(2, "set", Some("02"), (20, Some(30)), None, "fail"),
        line(3, "get", None, (40, Some(50)), Some("02"), "ok"),
    ]
    .join("\n");
    let report = check_kv_history_file(write_file("bad", &text), &Budget::default()).unwrap();
    assert_eq!(report.verdict(), Verdict::NotLinearizable);
    let shown = report.to_string();
    assert!(shown.contains("key 5: not linearizable at the operation on line 3"), "{shown}");
}

#[test]
fn missing_file_is_an_io_error() {
    let out = check_kv_history_file("/nonexistent/fleet-history.jsonl", &Budget::default());
    assert!(matches!(out, Err(HistoryError::Io(_))));
}
