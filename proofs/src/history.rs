//! The JSON-lines history format written by Fleet's benchmark tools, for KV and RSL-KV runs.
//!
//! One JSON object per line (blank lines are skipped; unknown fields are ignored):
//!
//! ```text
//! {"client":3,"op":"set","key":42,"value":"cafe","invoke_us":100,"complete_us":250,"result":null,"status":"ok"}
//! {"client":4,"op":"get","key":42,"value":null,"invoke_us":120,"complete_us":260,"result":"cafe","status":"ok"}
//! {"client":5,"op":"del","key":42,"value":null,"invoke_us":300,"complete_us":null,"result":null,"status":"timeout"}
//! ```
//!
//! * `op`: `"get"`, `"set"` or `"del"`. A `set` whose `value` is `null` is a delete (as in IronKV).
//! * `value`, `result`: byte strings in **hex** (either case, even length; `""` is the empty
//!   value), or `null`. `value` is required for a non-deleting `set` and must be `null` for `get`
//!   and `del`. For an ok `get`, `result` is the value read, `null` meaning "key absent"; for an
//!   ok `set`/`del` it must be `null` or `"ok"`. `value`, `complete_us` and `result` may be omitted
//!   (meaning `null`).
//! * `status`: `"ok"` (completed: `complete_us` required, not before `invoke_us`); `"fail"` (the
//!   operation definitely did not take effect: dropped from the history); `"timeout"` (outcome
//!   unknown: kept as a pending operation that may or may not have taken effect; `complete_us`
//!   and `result` are ignored). A timed-out `get` constrains nothing and is dropped.
//! * Times are microseconds on one clock shared by all clients (e.g. one benchmark process).

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::linearizability::Operation;
use crate::spec::kv::{KvOp, KvRet};

mod report;

pub use report::{check_kv_history, check_kv_history_file, KvCheckReport, Verdict};

/// One line of a history file, as written by a benchmark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Client id.
    pub client: u64,
    /// Operation kind.
    pub op: RecordOp,
    /// The key operated on.
    pub key: u64,
    /// Hex value written by a `set`; `null` otherwise.
    #[serde(default)]
    pub value: Option<String>,
    /// Invocation time, microseconds.
    pub invoke_us: u64,
    /// Completion time, microseconds; required when `status` is `ok`.
    #[serde(default)]
    pub complete_us: Option<u64>,
    /// Hex value read by an ok `get` (`null` = absent); `null` or `"ok"` for `set`/`del`.
    #[serde(default)]
    pub result: Option<String>,
    /// How the operation ended.
    pub status: RecordStatus,
}

/// The `op` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOp {
    /// Read.
    Get,
    /// Write (or delete, with a `null` value).
    Set,
    /// Delete.
    Del,
}

/// The `status` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Completed with the recorded result.
    Ok,
    /// Definitely did not take effect.
    Fail,
    /// Outcome unknown.
    Timeout,
}

/// A parsed KV history, ready for the checker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvHistory {
    /// The operations kept (ok, and pending writes), in file order.
    pub operations: Vec<Operation<KvOp, KvRet>>,
    /// `lines[i]` is the 1-based line number of `operations[i]`.
    pub lines: Vec<usize>,
    /// What was read and what was dropped.
    pub stats: HistoryStats,
}

/// Counts of records by fate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    /// Non-blank lines parsed.
    pub records: usize,
    /// Records with status `ok`.
    pub ok: usize,
    /// Records with status `fail` (dropped).
    pub failed: usize,
    /// Timed-out writes and deletes (kept as pending).
    pub pending_writes: usize,
    /// Timed-out gets (dropped: they constrain nothing).
    pub pending_reads: usize,
}

/// A history file could not be read or parsed.
#[derive(Debug)]
pub enum HistoryError {
    /// Reading failed.
    Io(std::io::Error),
    /// Line `line` (1-based) is malformed.
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl core::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HistoryError::Io(e) => write!(f, "reading history: {e}"),
            HistoryError::Line { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for HistoryError {}

/// Parses a JSON-lines KV history.
pub fn parse_kv_history<R: BufRead>(reader: R) -> Result<KvHistory, HistoryError> {
    let mut out = KvHistory::default();
    for (n, line) in reader.lines().enumerate() {
        let line_no = n + 1;
        let line = line.map_err(HistoryError::Io)?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| HistoryError::Line { line: line_no, message };
        let record: HistoryRecord = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        out.stats.records += 1;
        match record_to_operation(&record).map_err(at)? {
            Some(op) => {
                match record.status {
                    RecordStatus::Ok => out.stats.ok += 1,
                    _ => out.stats.pending_writes += 1,
                }
                out.operations.push(op);
                out.lines.push(line_no);
            }
            None if record.status == RecordStatus::Fail => out.stats.failed += 1,
            None => out.stats.pending_reads += 1,
        }
    }
    Ok(out)
}

/// The checker's view of one record: `None` if it is dropped (failed, or a timed-out get).
pub fn record_to_operation(r: &HistoryRecord) -> Result<Option<Operation<KvOp, KvRet>>, String> {
    let value = r.value.as_deref().map(|v| decode_hex(v).map_err(|e| format!("value: {e}"))).transpose()?;
    let op = match (r.op, value) {
        (RecordOp::Get, None) => KvOp::Get(r.key),
        (RecordOp::Set, Some(v)) => KvOp::Set(r.key, v),
        (RecordOp::Set, None) | (RecordOp::Del, None) => KvOp::Delete(r.key),
        (RecordOp::Get | RecordOp::Del, Some(_)) => return Err(format!("{:?} must have a null value", r.op)),
    };
    let complete = match r.status {
        RecordStatus::Fail => return Ok(None),
        RecordStatus::Timeout if matches!(op, KvOp::Get(_)) => return Ok(None),
        RecordStatus::Timeout => None,
        RecordStatus::Ok => {
            let done = r.complete_us.ok_or("status ok needs complete_us")?;
            if done < r.invoke_us {
                return Err(format!("complete_us {done} is before invoke_us {}", r.invoke_us));
            }
            let ret = match (&op, r.result.as_deref()) {
                (KvOp::Get(_), None) => KvRet::Value(None),
                (KvOp::Get(_), Some(h)) => KvRet::Value(Some(decode_hex(h).map_err(|e| format!("result: {e}"))?)),
                (_, None | Some("ok")) => KvRet::Ok,
                (_, Some(other)) => return Err(format!("result of a write must be null or \"ok\", not {other:?}")),
            };
            Some((done, ret))
        }
    };
    Ok(Some(Operation { client: r.client, op, invoke_us: r.invoke_us, complete }))
}

/// Lower-case hex encoding of `bytes`, as history writers should emit it.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decodes hex (either case, even length).
pub fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("hex string of odd length {}", s.len()));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("non-hex character {:?}", char::from(c))),
    };
    s.as_bytes().chunks(2).map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?)).collect()
}
