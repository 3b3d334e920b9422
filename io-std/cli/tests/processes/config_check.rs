//! `fleet config check`: a good file is summarised, a bad one is refused naming the file, the
//! key and what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use crate::support::FLEET;
use fleet_cli::procs::scratch_dir;

fn check(file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(FLEET).args(["config", "check", file.to_str().unwrap()]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_summarises_a_good_file_and_names_what_is_wrong_in_a_bad_one() {
    let dir = scratch_dir("config-check").unwrap();
    let good = dir.join("good.toml");
    let out = Command::new(FLEET)
        .args(["config", "local", "--replicas", "3", "--keys", dir.join("keys").to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::write(&good, &out.stdout).unwrap();
    let (ok, stdout, stderr) = check(&good);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok") && stdout.contains("rsl: 3 replicas") && stdout.contains("kv: 3 hosts"), "{stdout}");
    assert!(stdout.contains("member key"), "{stdout}");
    assert!(stdout.contains("no leases"), "{stdout}");
    let leased = dir.join("leased.toml");
    std::fs::write(&leased, "[rsl]\nreplicas = [\"127.0.0.1:1\"]\nlease_ms = 300\nclock_drift_ppm = 500\n").unwrap();
    let (ok, stdout, stderr) = check(&leased);
    assert!(ok && stdout.contains("leader leases of 300 ms") && stdout.contains("500 ppm"), "{stdout} {stderr}");

    let cases = [
        (
            "[rsl]\nreplicas = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nmax_log_length = 99\n",
            "rsl.max_log_length: out of range: must be 1 to",
        ),
        ("[rsl]\nreplicas = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n", "rsl.replicas[1]"),
        ("[rsl]\nreplicas = [\"nonsense\"]\n", "rsl.replicas[0]: `nonsense` is not an address"),
        ("[rsl]\nreplicas = [\"127.0.0.1:1\"]\nheartbeat_period_ms = 0\n", "rsl.heartbeat_period_ms: out of range"),
        ("[rsl]\nreplica = [\"127.0.0.1:1\"]\n", "unknown field `replica`"),
        (
            "[rsl]\nreplicas = [\"127.0.0.1:1\"]\nlease_ms = 50\n",
            "rsl.lease_ms: out of range: 0 (off), or from twice heartbeat_period_ms",
        ),
        (
            "[rsl]\nreplicas = [\"127.0.0.1:1\"]\nlease_ms = 300\nclock_drift_ppm = 300000\n",
            "rsl.clock_drift_ppm: out of range: at most 200000",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let bad = dir.join(format!("bad-{i}.toml"));
        std::fs::write(&bad, text).unwrap();
        let (ok, _, stderr) = check(&bad);
        assert!(!ok, "case {i} accepted");
        assert!(stderr.contains(&format!("bad-{i}.toml")) && stderr.contains(want), "case {i}: {stderr}");
    }

    // A key file others may read is refused, named, with the fix.
    let key = dir.join("keys").join("client.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (ok, _, stderr) = check(&good);
    assert!(!ok && stderr.contains("client.key") && stderr.contains("chmod 600"), "{stderr}");
}
