//! Authenticated clusters as a user runs them (issue 18): sealed replicas and KV hosts
//! serve; a client with the wrong key gets a clear error and changes nothing; a replica with
//! the wrong member key cannot take part; datagrams forged from a raw socket with a member's
//! source address are refused and counted. Every process is started here and killed on drop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::kv::last_field;
use crate::support::{fleet, parse_stats, FLEET};
use fleet_cli::procs::{free_udp_ports, scratch_dir, Children};
use fleet_io_std::auth::{new_key_files, write_new_key_file};
use fleet_io_std::config::{AuthSection, ClusterFile};

/// A sealed 3-replica RSL cluster's files: the config, and the folder its keys are in.
struct Sealed {
    dir: fleet_cli::procs::ScratchDir,
    config: PathBuf,
    file: ClusterFile,
    auth: AuthSection,
}

fn sealed_config(tag: &str) -> Sealed {
    let dir = scratch_dir(tag).unwrap();
    let ports = free_udp_ports(6).unwrap();
    let mut file = ClusterFile::local(3, 0);
    file.rsl.as_mut().unwrap().replicas = ports[..3].iter().map(|p| format!("127.0.0.1:{p}")).collect();
    file.rsl.as_mut().unwrap().baseline_view_timeout_ms = Some(300);
    file.kv.as_mut().unwrap().hosts = ports[3..].iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let auth = new_key_files(&dir.join("keys")).unwrap();
    file.auth = Some(auth.clone());
    let config = dir.join("cluster.toml");
    std::fs::write(&config, file.to_toml()).unwrap();
    Sealed { dir, config, file, auth }
}

/// A copy of the config with `change` applied to its `[auth]` section, at `name`.
fn variant(s: &Sealed, name: &str, change: impl FnOnce(&mut AuthSection)) -> PathBuf {
    let mut file = s.file.clone();
    let mut auth = s.auth.clone();
    change(&mut auth);
    file.auth = Some(auth);
    let path = s.dir.join(name);
    std::fs::write(&path, file.to_toml()).unwrap();
    path
}

fn serve(children: &mut Children, what: &str, config: &Path, id: usize, dir: &Path) -> PathBuf {
    let log = dir.join(format!("{what}-{id}.log"));
    let args = [what, "serve", "--config", config.to_str().unwrap(), "--id", &id.to_string(), "-v"];
    children.spawn(Path::new(FLEET), &args, &log).unwrap();
    log
}

/// Polls `cond` every 100 ms for at most `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counter(log: &Path, name: &str) -> u64 {
    last_field(&std::fs::read_to_string(log).unwrap_or_default(), name).unwrap_or(0)
}

fn put_until_ok(config: &Path, key: &str, value: &str) {
    let ok = eventually(Duration::from_secs(10), || {
        fleet(&["rsl", "put", "--config", config.to_str().unwrap(), key, value, "--timeout-ms", "1000"]).0
    });
    assert!(ok, "the sealed cluster accepts a write within 10 s");
}

#[test]
fn a_client_with_the_wrong_key_gets_a_clear_error_and_changes_nothing() {
    let s = sealed_config("auth-client");
    let mut children = Children::default();
    let logs: Vec<_> = (0..3).map(|id| serve(&mut children, "rsl", &s.config, id, &s.dir)).collect();
    let config = s.config.to_str().unwrap();
    put_until_ok(&s.config, "color", "teal");

    // Another key under the same id: every replica's MAC check fails.
    let wrong_key = s.dir.join("wrong-client.key");
    write_new_key_file(&wrong_key, 1, "client").unwrap();
    let wrong = variant(&s, "wrong-client.toml", |a| a.client_key = wrong_key.display().to_string());
    let (ok, _, err) =
        fleet(&["rsl", "put", "--config", wrong.to_str().unwrap(), "color", "red", "--timeout-ms", "1500"]);
    assert!(!ok, "a wrong client key must not write");
    assert!(err.contains("refused this client's datagrams") && err.contains("MAC does not match"), "{err}");
    assert!(err.contains("wrong-client.key"), "the error names the key file: {err}");

    // A key id the cluster does not hold: the notice says which.
    let other_id = s.dir.join("other-id.key");
    write_new_key_file(&other_id, 9, "client").unwrap();
    let other = variant(&s, "other-id.toml", |a| a.client_key = other_id.display().to_string());
    let (ok, _, err) =
        fleet(&["rsl", "put", "--config", other.to_str().unwrap(), "color", "red", "--timeout-ms", "1500"]);
    assert!(!ok && err.contains("key id 9"), "{err}");

    // Nothing changed: the right key reads the old value.
    let (ok, out, err) = fleet(&["rsl", "get", "--config", config, "color"]);
    assert!(ok && out.trim() == "teal", "{out} {err}");

    // Status goes sealed too: answered under the right key, a clear refusal under a wrong one.
    let (ok, out, err) = fleet(&["rsl", "status", "--config", config]);
    assert!(ok && out.contains("leader: replica"), "{out} {err}");
    let (ok, _, err) = fleet(&["rsl", "status", "--config", wrong.to_str().unwrap()]);
    assert!(!ok && err.contains("refused this client's datagrams"), "{err}");

    // A key file others may read is refused by name, before anything is sent.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrong_key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, _, err) = fleet(&["rsl", "get", "--config", wrong.to_str().unwrap(), "color"]);
        assert!(!ok && err.contains("wrong-client.key") && err.contains("chmod 600"), "{err}");
    }

    // The replicas counted what they refused (each client retransmits to every replica).
    let refused = |log: &PathBuf| counter(log, "bad_tag") + counter(log, "unknown_key");
    assert!(
        eventually(Duration::from_secs(3), || logs.iter().all(|l| refused(l) >= 1)),
        "every replica counts refused datagrams: {:?}",
        logs.iter().map(refused).collect::<Vec<_>>()
    );
}

#[test]
fn a_replica_with_the_wrong_member_key_cannot_take_part() {
    // A durable cluster is born with the right keys; then replica 2 is restarted from its
    // data directory with another member key (an operator's mistake, or an impostor).
    let s = sealed_config("auth-member");
    let wrong_key = s.dir.join("wrong-member.key");
    write_new_key_file(&wrong_key, 1, "member").unwrap();
    let wrong = variant(&s, "wrong-member.toml", |a| a.member_key = wrong_key.display().to_string());
    let mut children = Children::default();
    let serve_durable = |children: &mut Children, config: &Path, id: usize, run: &str| {
        let log = s.dir.join(format!("rsl-{id}-{run}.log"));
        let data = s.dir.join(format!("data-{id}")).display().to_string();
        let id = id.to_string();
        let args = ["rsl", "serve", "--config", config.to_str().unwrap(), "--id", &id, "-v", "--data-dir", &data];
        (children.spawn(Path::new(FLEET), &args, &log).unwrap(), log)
    };
    let good: Vec<_> = (0..2).map(|id| serve_durable(&mut children, &s.config, id, "first").1).collect();
    let (first_2, _) = serve_durable(&mut children, &s.config, 2, "first");
    put_until_ok(&s.config, "k", "v");
    children.kill(first_2);
    let (_, bad) = serve_durable(&mut children, &wrong, 2, "wrong-key");
    let config = s.config.to_str().unwrap();
    for i in 0..20 {
        let (ok, _, err) = fleet(&["rsl", "put", "--config", config, &format!("k{i}"), "v"]);
        assert!(ok, "the good pair serves: {err}");
    }
    let executed = |log: &PathBuf| {
        std::fs::read_to_string(log).unwrap_or_default().lines().rev().find_map(parse_stats).map_or(0, |s| s.executed)
    };
    assert!(eventually(Duration::from_secs(3), || good.iter().all(|l| executed(l) >= 21)), "the good pair executes");
    // Its recovery from its own disk is done by its second stats line.
    let lines =
        || std::fs::read_to_string(&bad).unwrap_or_default().lines().filter(|l| parse_stats(l).is_some()).count();
    assert!(eventually(Duration::from_secs(5), || lines() >= 2), "the restarted replica logs stats");
    let stuck = executed(&bad);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(executed(&bad), stuck, "the replica with the wrong member key learns nothing");
    assert!(stuck < 21, "it executed only what it had before its restart: {stuck}");
    let log = std::fs::read_to_string(&good[0]).unwrap();
    assert!(log.contains("refused a datagram from member"), "the good replicas say why:\n{log}");
    let bad_log = std::fs::read_to_string(&bad).unwrap();
    assert!(bad_log.contains("refuses this member's datagrams"), "the bad replica hears the notices:\n{bad_log}");
    // With one good replica gone, the bad one cannot make a quorum with the other.
    children.kill(1);
    let (ok, _, err) = fleet(&["rsl", "put", "--config", config, "after", "v", "--timeout-ms", "2000"]);
    assert!(!ok, "no quorum without the replica of the wrong key: {err}");
}

#[test]
fn sealed_kv_hosts_serve_and_refuse_a_wrong_client_key() {
    let s = sealed_config("auth-kv");
    let mut children = Children::default();
    for id in 0..3 {
        serve(&mut children, "kv", &s.config, id, &s.dir);
    }
    let config = s.config.to_str().unwrap();
    let ok = eventually(Duration::from_secs(10), || {
        fleet(&["kv", "set", "--config", config, "42", "answer", "--timeout-ms", "1000"]).0
    });
    assert!(ok, "sealed KV hosts accept a write");
    let wrong_key = s.dir.join("wrong-kv-client.key");
    write_new_key_file(&wrong_key, 1, "client").unwrap();
    let wrong = variant(&s, "wrong-kv.toml", |a| a.client_key = wrong_key.display().to_string());
    let (ok, _, err) =
        fleet(&["kv", "set", "--config", wrong.to_str().unwrap(), "42", "forged", "--timeout-ms", "1500"]);
    assert!(!ok && err.contains("refused this client's datagrams"), "{err}");
    let (ok, out, err) = fleet(&["kv", "get", "--config", config, "42"]);
    assert!(ok && out.trim() == "answer", "{out} {err}");
    let (ok, out, err) = fleet(&["kv", "status", "--config", config]);
    assert!(ok && out.contains("[0, end)") && out.contains("host 0"), "{out} {err}");
    let (ok, _, err) = fleet(&["kv", "status", "--config", wrong.to_str().unwrap()]);
    assert!(!ok && err.contains("refused this client's datagrams"), "{err}");
}

#[test]
fn datagrams_forged_from_a_raw_socket_with_a_members_address_are_refused_and_counted() {
    let s = sealed_config("auth-raw");
    let mut children = Children::default();
    let logs: Vec<_> = (0..3).map(|id| serve(&mut children, "rsl", &s.config, id, &s.dir)).collect();
    put_until_ok(&s.config, "before", "1");
    let setup = s.file.rsl().unwrap();
    let (victim, spoofed) = (setup.addrs[0], setup.addrs[1]);
    let raw = match raw::Sender::open() {
        Ok(raw) => raw,
        Err(e) => {
            // A raw socket needs root (CI runs as root); say so rather than pass silently.
            assert!(!raw::is_root(), "running as root, yet no raw socket: {e}");
            eprintln!("SKIPPED: no raw socket here (not root?): {e}");
            return;
        }
    };
    const FORGED: u64 = 200;
    // A plain RSL datagram as an unauthenticated cluster would take it, and one that looks
    // sealed under the cluster's key id with a made-up tag.
    let mut plain = vec![0xF1, fleet_engine::wire::WIRE_VERSION, b'R', 0, 0, 0, 0];
    plain.resize(40, 7);
    let mut sealed_looking = vec![0xF1, fleet_engine::wire::WIRE_VERSION, b'A', 1];
    sealed_looking.extend_from_slice(&plain);
    sealed_looking.extend_from_slice(&[0x5a; 16]);
    for i in 0..FORGED {
        let payload: &[u8] = if i % 2 == 0 { &plain } else { &sealed_looking };
        raw.send(spoofed, victim, payload).unwrap();
    }
    let unsealed = || counter(&logs[0], "unsealed");
    let bad_tag = || counter(&logs[0], "bad_tag");
    assert!(
        eventually(Duration::from_secs(5), || unsealed() >= FORGED / 2 && bad_tag() >= FORGED / 2),
        "the victim counted the forgeries: unsealed={} bad_tag={}",
        unsealed(),
        bad_tag()
    );
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains(&format!("refused a datagram from member {spoofed}")), "{log}");
    put_until_ok(&s.config, "after", "2");
    let (ok, out, _) = fleet(&["rsl", "get", "--config", s.config.to_str().unwrap(), "before"]);
    assert!(ok && out.trim() == "1");
}

#[test]
fn config_local_writes_private_keys_and_never_replaces_them() {
    let dir = scratch_dir("auth-cli").unwrap();
    let keys = dir.join("keys");
    let (ok, out, err) = fleet(&["config", "local", "--keys", keys.to_str().unwrap()]);
    assert!(ok, "{err}");
    let file = ClusterFile::parse(&out).unwrap();
    let auth = file.auth.clone().expect("an [auth] section");
    for path in [&auth.member_key, &auth.client_key] {
        let key = Path::new(path);
        assert!(key.is_absolute() && key.starts_with(std::fs::canonicalize(&keys).unwrap()), "{path}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600, "{path}");
        }
        fleet_io_std::auth::load_key_file(key).unwrap();
    }
    let (ok, _, err) = fleet(&["config", "local", "--keys", keys.to_str().unwrap()]);
    assert!(!ok && err.contains("already there"), "{err}");
}

/// Raw IPv4 datagrams with a chosen source address and port (needs CAP_NET_RAW).
mod raw {
    use std::net::{SocketAddr, SocketAddrV4};
    use std::os::fd::{AsRawFd, OwnedFd};

    use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn};

    pub struct Sender(OwnedFd);

    pub fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    impl Sender {
        pub fn open() -> nix::Result<Sender> {
            socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Raw).map(Sender)
        }

        /// Sends `payload` as a UDP datagram from `from` to `to` (IPv4 only).
        pub fn send(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) -> nix::Result<usize> {
            let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else { return Err(nix::Error::EAFNOSUPPORT) };
            let udp_len = 8 + payload.len();
            let total = 20 + udp_len;
            let mut packet = Vec::with_capacity(total);
            // IPv4 header: the kernel fills in the checksum (and the id, left 0).
            packet.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
            packet.extend_from_slice(&from.ip().octets());
            packet.extend_from_slice(&to.ip().octets());
            // UDP header: checksum 0 (none) is valid over IPv4.
            packet.extend_from_slice(&from.port().to_be_bytes());
            packet.extend_from_slice(&to.port().to_be_bytes());
            packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
            packet.extend_from_slice(&[0, 0]);
            packet.extend_from_slice(payload);
            let dst = SockaddrIn::from(SocketAddrV4::new(*to.ip(), 0));
            sendto(self.0.as_raw_fd(), &packet, &dst, MsgFlags::empty())
        }
    }
}

/// A key file holding `keys` (id, hex), the first sealing, mode 600.
fn write_keys(path: &Path, keys: &[(u8, &str)]) {
    use std::io::Write as _;
    let text: String = keys.iter().map(|(id, hex)| format!("{id} {hex}\n")).collect();
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The id and hex of the one key in a key file.
fn only_key(path: &Path) -> (u8, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap();
    let (id, hex) = line.split_once(' ').unwrap();
    (id.parse().unwrap(), hex.trim().to_string())
}

/// Waits (at most 20 s) until replica `id` answers as a voting member, has executed what the
/// leader had when it was first seen, and the cluster serves again: a leader has executed
/// operations since. Under the test's load the last part says the failover is over; without
/// it a rolling restart can take down each new leader as soon as it is elected, and three
/// failovers back to back are an outage longer than a benchmark run.
fn back_and_caught_up(config: &Path, id: usize) {
    let mut target = None;
    let ok = eventually(Duration::from_secs(20), || {
        let (_, out, _) = fleet(&["rsl", "status", "--json", "--config", config.to_str().unwrap()]);
        let rows: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let Some(rows) = rows.as_array() else { return false };
        let leader_ops = rows.iter().find(|r| r["leader"] == true).and_then(|r| r["ops_complete"].as_u64());
        if target.is_none() {
            target = leader_ops;
        }
        let Some(target) = target else { return false };
        let me = &rows[id];
        me["reachable"] == true
            && me["rejoining"] == false
            && me["ops_complete"].as_u64().is_some_and(|o| o >= target)
            && leader_ops.is_some_and(|o| o > target)
    });
    assert!(ok, "replica {id} is back and caught up, and the cluster serves, within 20 s");
}

#[test]
fn keys_rotate_under_load_without_downtime() {
    // Three durable replicas under a closed-loop load of consecutive benchmark runs (each a
    // new client process that reads the key files as they are then). The documented
    // procedure, every step a rolling restart, one replica at a time:
    //   1. add the new keys as accepted (files: old, new);
    //   2. seal with the new keys (files: new, old);
    //   3. retire the old keys (files: new).
    let s = sealed_config("auth-rotate");
    let (old_member, old_client) = (only_key(Path::new(&s.auth.member_key)), only_key(Path::new(&s.auth.client_key)));
    let fresh = |what: &str| {
        let p = s.dir.join(format!("fresh-{what}.key"));
        write_new_key_file(&p, 2, what).unwrap();
        only_key(&p)
    };
    let (new_member, new_client) = (fresh("member"), fresh("client"));
    let mut children = Children::default();
    let spawn = |children: &mut Children, id: usize, run: &str| {
        let log = s.dir.join(format!("rsl-{id}-{run}.log"));
        let data = s.dir.join(format!("data-{id}")).display().to_string();
        let id = id.to_string();
        let args = ["rsl", "serve", "--config", s.config.to_str().unwrap(), "--id", &id, "--data-dir", &data];
        children.spawn(Path::new(FLEET), &args, &log).unwrap()
    };
    let mut child: Vec<usize> = (0..3).map(|id| spawn(&mut children, id, "start")).collect();
    put_until_ok(&s.config, "before", "rotation");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, config) = (stop.clone(), s.config.clone());
        std::thread::spawn(move || {
            let mut runs = Vec::new();
            // Bounded: at most 60 two-second runs, and it stops when told. Two seconds: a
            // run spans a leader's failover (each step restarts the leader once), so a run
            // without operations is an outage, not a failover that filled a short run.
            for _ in 0..60 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (ok, out, err) = fleet(&[
                    "bench",
                    "rsl",
                    "--config",
                    config.to_str().unwrap(),
                    "--clients",
                    "8",
                    "--duration-s",
                    "2",
                    "--json",
                ]);
                let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
                runs.push((ok, v["ops"].as_u64().unwrap_or(0), err));
            }
            runs
        })
    };
    type Keys<'a> = Vec<(u8, &'a str)>;
    let steps: [(&str, Keys<'_>, Keys<'_>); 3] = [
        (
            "accept-new",
            vec![(old_member.0, &old_member.1), (new_member.0, &new_member.1)],
            vec![(old_client.0, &old_client.1), (new_client.0, &new_client.1)],
        ),
        (
            "seal-new",
            vec![(new_member.0, &new_member.1), (old_member.0, &old_member.1)],
            vec![(new_client.0, &new_client.1), (old_client.0, &old_client.1)],
        ),
        ("retire-old", vec![(new_member.0, &new_member.1)], vec![(new_client.0, &new_client.1)]),
    ];
    for (step, member, client) in &steps {
        write_keys(Path::new(&s.auth.member_key), member);
        write_keys(Path::new(&s.auth.client_key), client);
        std::thread::sleep(Duration::from_millis(1200)); // a client run under the new files
        for (id, current) in child.iter_mut().enumerate() {
            children.kill(*current);
            *current = spawn(&mut children, id, step);
            // A rolling restart restarts the next replica only once this one is back and
            // caught up: two down at once is an outage whatever the keys.
            back_and_caught_up(&s.config, id);
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = load.join().unwrap();
    let served = runs.iter().filter(|(ok, ops, _)| *ok && *ops > 0).count();
    assert!(runs.len() >= 4, "the load ran through the rotation: {} runs", runs.len());
    assert_eq!(
        served,
        runs.len(),
        "every run completed operations: {:?}",
        runs.iter().map(|(ok, ops, err)| (*ok, *ops, err.lines().last().unwrap_or(""))).collect::<Vec<_>>()
    );
    // The data is all there, read with the new keys only; the old keys are refused.
    let (ok, out, err) = fleet(&["rsl", "get", "--config", s.config.to_str().unwrap(), "before"]);
    assert!(ok && out.trim() == "rotation", "{out} {err}");
    write_keys(Path::new(&s.auth.client_key), &[(old_client.0, &old_client.1)]);
    let (ok, _, err) = fleet(&["rsl", "get", "--config", s.config.to_str().unwrap(), "before", "--timeout-ms", "1500"]);
    assert!(!ok && err.contains("refused this client's datagrams") && err.contains("key id 1"), "{err}");
}
