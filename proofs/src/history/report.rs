//! Checking a KV history file and reporting the verdict.

use core::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::{parse_kv_history, HistoryError, HistoryStats, KvHistory};
use crate::budget::Budget;
use crate::linearizability::{check_partitioned, PartitionedOutcome};
use crate::spec::kv::KvSpec;

/// The overall verdict of a history check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's sub-history is linearizable.
    Linearizable,
    /// At least one key's sub-history is not linearizable.
    NotLinearizable,
    /// No violation found, but some key ran out of budget.
    Unknown,
}

/// The result of checking a KV history against [`KvSpec`], key by key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCheckReport {
    /// What was read and dropped.
    pub stats: HistoryStats,
    /// `lines[i]` is the file line of operation `#i` in explanations.
    pub lines: Vec<usize>,
    /// Per-key outcomes (operation indices refer to the kept operations, see `lines`).
    pub outcome: PartitionedOutcome<u64>,
}

impl KvCheckReport {
    /// The overall verdict: any violation wins over unknown keys.
    pub fn verdict(&self) -> Verdict {
        if !self.outcome.violations.is_empty() {
            Verdict::NotLinearizable
        } else if !self.outcome.unknown.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }
}

/// Reads the JSON-lines history at `path` and checks it key by key from an empty table.
pub fn check_kv_history_file(path: impl AsRef<Path>, budget: &Budget) -> Result<KvCheckReport, HistoryError> {
    let file = File::open(path).map_err(HistoryError::Io)?;
    let history = parse_kv_history(BufReader::new(file))?;
    check_kv_history(&history, budget)
}

/// Checks an already parsed history key by key from an empty table. Fails only if the
/// history is malformed, which [`parse_kv_history`] already rules out.
pub fn check_kv_history(history: &KvHistory, budget: &Budget) -> Result<KvCheckReport, HistoryError> {
    let outcome = check_partitioned(&KvSpec::default(), &history.operations, budget).map_err(|e| {
        let line = history.lines.get(e.index).copied().unwrap_or(0);
        HistoryError::Line { line, message: e.message }
    })?;
    Ok(KvCheckReport { stats: history.stats, lines: history.lines.clone(), outcome })
}

impl fmt::Display for KvCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let o = &self.outcome;
        writeln!(
            f,
            "{:?}: {} records ({} ok, {} failed and dropped, {} pending writes, {} pending reads dropped); \
             keys: {} linearizable, {} violating, {} unknown",
            self.verdict(),
            s.records,
            s.ok,
            s.failed,
            s.pending_writes,
            s.pending_reads,
            o.linearized.len(),
            o.violations.len(),
            o.unknown.len()
        )?;
        for (key, v) in &o.violations {
            let line = v.stuck_op.and_then(|i| self.lines.get(i));
            match line {
                Some(line) => writeln!(f, "key {key}: not linearizable at the operation on line {line}")?,
                None => writeln!(f, "key {key}: not linearizable")?,
            }
            writeln!(f, "  {}", v.explanation)?;
            let shown: Vec<String> = v
                .longest_prefix
                .iter()
                .rev()
                .take(5)
                .rev()
                .chain(v.stuck_op.iter())
                .filter_map(|&i| self.lines.get(i).map(|l| format!("#{i}=line {l}")))
                .collect();
            writeln!(f, "  ({})", shown.join(", "))?;
        }
        for (key, u) in &o.unknown {
            writeln!(f, "key {key}: unknown ({} after {} steps)", u.exhausted.reason, u.exhausted.steps)?;
        }
        Ok(())
    }
}
