//! Checks a JSON-lines KV history file (see `fleet_proofs::history`) for linearizability.
//!
//! Usage: `fleet-check-history FILE [MAX_SECONDS]`. Exit status: 0 linearizable,
//! 1 not linearizable, 2 unknown (budget exhausted), 3 usage or input error.

use std::process::ExitCode;
use std::time::Duration;

use fleet_proofs::history::{check_kv_history_file, Verdict};
use fleet_proofs::Budget;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), None) = (args.first(), args.get(2)) else {
        eprintln!("usage: fleet-check-history FILE [MAX_SECONDS]");
        return ExitCode::from(3);
    };
    let mut budget = Budget::default();
    if let Some(secs) = args.get(1) {
        match secs.parse::<u64>() {
            Ok(secs) => budget.max_time = Some(Duration::from_secs(secs)),
            Err(e) => {
                eprintln!("MAX_SECONDS: {e}");
                return ExitCode::from(3);
            }
        }
    }
    match check_kv_history_file(path, &budget) {
        Ok(report) => {
            print!("{report}");
            ExitCode::from(match report.verdict() {
                Verdict::Linearizable => 0,
                Verdict::NotLinearizable => 1,
                Verdict::Unknown => 2,
            })
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            ExitCode::from(3)
        }
    }
}
