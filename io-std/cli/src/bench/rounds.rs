//! `fleet bench --rounds N`: the runs of a sweep repeated N times, rounds interleaved, and
//! summarised per client count by their median. On a shared machine one run can be 20 %
//! faster or slower than the next (docs/performance.md); a scaling figure read from single
//! runs then says more about the minute it ran in than about the client count.

use super::options::BenchResult;

/// One client count's runs over the rounds of a sweep.
#[derive(Debug, Clone)]
pub struct CountSummary {
    /// The client count.
    pub clients: usize,
    /// Runs at this count.
    pub runs: usize,
    /// The median run's throughput, ops/s ([`median_index`] for an even number of runs).
    pub median_ops_per_s: f64,
    /// The slowest run's throughput, ops/s.
    pub min_ops_per_s: f64,
    /// The fastest run's throughput, ops/s.
    pub max_ops_per_s: f64,
    /// The median of the runs' 99th percentile latencies, µs.
    pub median_p99_us: u64,
    /// The median of the runs' 99.9th percentile latencies, µs.
    pub median_p999_us: u64,
    /// The best median throughput of the counts with fewer clients, and that count; `None`
    /// for the smallest count.
    pub best_below: Option<(f64, usize)>,
    /// The run whose throughput is the median (what a plot of the sweep draws).
    pub median_run: BenchResult,
}

impl CountSummary {
    /// This count's median throughput as a fraction of the best median below it.
    pub fn of_best_below(&self) -> Option<f64> {
        self.best_below.map(|(best, _)| self.median_ops_per_s / best.max(f64::MIN_POSITIVE))
    }

    /// A human summary line.
    pub fn summary(&self) -> String {
        let below = match (self.best_below, self.of_best_below()) {
            (Some((best, clients)), Some(share)) => {
                format!("; {:.1} % of the best median below ({best:.0} ops/s at {clients} clients)", share * 100.0)
            }
            _ => String::new(),
        };
        format!(
            "{} clients over {} runs: median {:.0} ops/s ({:.0} to {:.0}), median p99 {} us, median p99.9 {} us{below}",
            self.clients,
            self.runs,
            self.median_ops_per_s,
            self.min_ops_per_s,
            self.max_ops_per_s,
            self.median_p99_us,
            self.median_p999_us,
        )
    }

    /// One JSON line with the same figures.
    pub fn json(&self) -> String {
        serde_json::json!({
            "clients": self.clients,
            "runs": self.runs,
            "median_ops_per_s": (self.median_ops_per_s * 10.0).round() / 10.0,
            "min_ops_per_s": (self.min_ops_per_s * 10.0).round() / 10.0,
            "max_ops_per_s": (self.max_ops_per_s * 10.0).round() / 10.0,
            "median_p99_us": self.median_p99_us,
            "median_p999_us": self.median_p999_us,
            "of_best_below": self.of_best_below().map(|s| (s * 1000.0).round() / 1000.0),
        })
        .to_string()
    }
}

/// Where the median of `len` sorted values sits: the middle one, or the lower of the two
/// middle ones when `len` is even (a run that happened, not an average of two).
pub fn median_index(len: usize) -> usize {
    len.saturating_sub(1) / 2
}

/// The runs of a sweep summarised per client count, in the order the counts first ran.
pub fn summarize(results: &[BenchResult]) -> Vec<CountSummary> {
    let mut counts: Vec<usize> = Vec::new();
    for r in results {
        if !counts.contains(&r.clients) {
            counts.push(r.clients);
        }
    }
    let mut summaries: Vec<CountSummary> = counts
        .iter()
        .filter_map(|&clients| {
            let mut runs: Vec<&BenchResult> = results.iter().filter(|r| r.clients == clients).collect();
            runs.sort_by(|a, b| a.ops_per_s.total_cmp(&b.ops_per_s));
            let median_run = (*runs.get(median_index(runs.len()))?).clone();
            let (first, last) = (runs.first()?, runs.last()?);
            let mut p99: Vec<u64> = runs.iter().map(|r| r.p99_us).collect();
            let mut p999: Vec<u64> = runs.iter().map(|r| r.p999_us).collect();
            p99.sort_unstable();
            p999.sort_unstable();
            Some(CountSummary {
                clients,
                runs: runs.len(),
                median_ops_per_s: median_run.ops_per_s,
                min_ops_per_s: first.ops_per_s,
                max_ops_per_s: last.ops_per_s,
                median_p99_us: p99[median_index(p99.len())],
                median_p999_us: p999[median_index(p999.len())],
                best_below: None,
                median_run,
            })
        })
        .collect();
    let medians: Vec<(usize, f64)> = summaries.iter().map(|s| (s.clients, s.median_ops_per_s)).collect();
    for s in &mut summaries {
        s.best_below = medians
            .iter()
            .filter(|(clients, _)| *clients < s.clients)
            .map(|&(clients, median)| (median, clients))
            .max_by(|a, b| a.0.total_cmp(&b.0));
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(clients: usize, ops_per_s: f64, p99_us: u64) -> BenchResult {
        BenchResult {
            ops: ops_per_s as u64,
            errors: 0,
            timeouts: 0,
            refused: 0,
            lost: 0,
            elapsed: Duration::from_secs(1),
            ops_per_s,
            p50_us: p99_us / 2,
            p99_us,
            p999_us: p99_us * 2,
            clients,
            load_threads: 1,
        }
    }

    #[test]
    fn each_count_is_summarised_by_its_median_run() {
        // Three rounds of a sweep of 1,024, 50 and 256 clients, interleaved.
        let results = [
            run(1024, 90.0, 900),
            run(50, 100.0, 100),
            run(256, 120.0, 300),
            run(1024, 130.0, 700),
            run(50, 80.0, 200),
            run(256, 110.0, 400),
            run(1024, 100.0, 800),
            run(50, 140.0, 150),
            run(256, 200.0, 350),
        ];
        let s = summarize(&results);
        let clients: Vec<usize> = s.iter().map(|c| c.clients).collect();
        assert_eq!(clients, [1024, 50, 256], "the order the counts first ran");
        let [big, small, mid] = &s[..] else { panic!("three counts") };
        assert_eq!(
            (small.runs, small.median_ops_per_s, small.min_ops_per_s, small.max_ops_per_s),
            (3, 100.0, 80.0, 140.0)
        );
        assert_eq!((small.median_p99_us, small.median_p999_us), (150, 300));
        assert_eq!(small.best_below, None, "no count below 50 clients");
        assert_eq!(mid.median_ops_per_s, 120.0);
        assert_eq!(mid.best_below, Some((100.0, 50)));
        assert_eq!(mid.median_run.p99_us, 300, "the median run itself");
        // Below 1,024: the best median is 256 clients' 120, though 50 ran a faster single run.
        assert_eq!(big.median_ops_per_s, 100.0);
        assert_eq!(big.best_below, Some((120.0, 256)));
        assert!((big.of_best_below().unwrap() - 100.0 / 120.0).abs() < 1e-12);
        assert!(
            big.summary().contains("83.3 % of the best median below (120 ops/s at 256 clients)"),
            "{}",
            big.summary()
        );
        let json: serde_json::Value = serde_json::from_str(&big.json()).unwrap();
        assert_eq!(json["of_best_below"].as_f64(), Some(0.833));
        assert_eq!(json["runs"].as_u64(), Some(3));
    }

    #[test]
    fn an_even_number_of_runs_takes_the_lower_middle_run() {
        assert_eq!((median_index(0), median_index(1), median_index(2), median_index(4)), (0, 0, 0, 1));
        let s = summarize(&[run(8, 30.0, 3), run(8, 10.0, 1), run(8, 40.0, 4), run(8, 20.0, 2)]);
        assert_eq!((s[0].median_ops_per_s, s[0].median_p99_us), (20.0, 2));
        assert!(summarize(&[]).is_empty());
    }
}
