//! The cluster configuration file (TOML), with validation errors that name the field.
//!
//! ```toml
//! [rsl]
//! replicas = ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
//! max_datagram_bytes = 65507  # optional; every RSL parameter has IronRSL's default
//!
//! [kv]
//! hosts = ["127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"]
//!
//! [auth]                             # optional: seal every datagram (docs/security.md)
//! member_key = "keys/member.key"     # replicas and KV hosts only
//! client_key = "keys/client.key"     # everyone; relative paths: from this file's folder
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fleet_engine::kv::KvConfig;
use fleet_engine::rsl::{Params, RslConfig};
use serde::{Deserialize, Serialize};

use crate::auth::AuthFiles;
use crate::capacity::{
    DEFAULT_MAX_KEYS, KV_DATAGRAM_BYTES, KV_MAX_HOSTS, MAX_REPLICAS, SERVER_DATAGRAM_BYTES, SERVER_WINDOW,
};
use crate::net::to_endpoint;

/// `max_datagram_bytes` of the RSL section [`ClusterFile::local`] writes: the largest UDP
/// payload. Loopback's MTU is 65,536 bytes, so such a datagram is one packet there, never
/// fragmented; a batch that fills it carries about 8 times the requests of an 8 KiB one, and
/// pipelined clients (16 requests in flight each) gain 15-20 % from it (docs/performance.md).
/// A cluster across machines keeps the engine's default (one 1,500-byte Ethernet frame)
/// unless its operator knows the path carries more.
pub const LOOPBACK_DATAGRAM_BYTES: usize = fleet_engine::wire::MAX_UDP_PAYLOAD_BYTES;

/// A configuration problem, naming the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// Where: the file, or `section.field`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigFileError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigFileError {
    ConfigFileError { field: field.into(), message: message.into() }
}

/// The `[rsl]` section: replicas and optional protocol parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RslSection {
    /// Replica addresses; a replica's id is its index.
    pub replicas: Vec<String>,
    /// Heartbeat period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_period_ms: Option<u64>,
    /// First view-change epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_view_timeout_ms: Option<u64>,
    /// Cap on the doubling epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_view_timeout_ms: Option<u64>,
    /// Requests per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<usize>,
    /// Wait for a partial batch while others are in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_delay_ms: Option<u64>,
    /// Log window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_length: Option<u64>,
    /// Datagram bound (1472 for a 1500 MTU; up to 65507 on loopback or jumbo networks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_datagram_bytes: Option<usize>,
    /// Leader re-sends of 2a / state-transfer retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmit_period_ms: Option<u64>,
    /// Leader leases (reads answered by the leader without a round per read): how long an
    /// acceptor holds; absent or 0: off (`fleet_engine::rsl::lease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// With leases: the bound on the clocks' rate error, in parts per million.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_drift_ppm: Option<u32>,
    /// Most keys the replicated map holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// More addresses of the cluster's replicas, asked for the current membership along
    /// with `replicas`: after membership changes replaced the file's replicas, list current
    /// ones here (not `replicas`, which names the cluster: its identity and, on a sealed
    /// cluster, every seal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
}

/// The `[kv]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSection {
    /// Host addresses; a host's id is its index; host 0 owns every key at start.
    pub hosts: Vec<String>,
    /// Longest value (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value_bytes: Option<usize>,
    /// Datagram bound (default 1472).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_datagram_bytes: Option<usize>,
    /// Keys each host may store (default 1,000,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
}

/// The `[auth]` section: the key files. With it every datagram is sealed with a MAC and
/// unsealed ones are refused; without it the cluster trusts its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// The member key file (replicas and hosts read it; clients never do).
    pub member_key: String,
    /// The client key file (everyone reads it).
    pub client_key: String,
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The RSL cluster, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsl: Option<RslSection>,
    /// The KV cluster, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvSection>,
    /// The key files, if datagrams are sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSection>,
    /// Where relative key-file paths start: the config file's folder (`load` sets it).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl ClusterFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ClusterFile, ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(path.display().to_string(), format!("cannot read the config file: {e}")))?;
        let mut file = Self::parse(&text).map_err(|mut e| {
            if e.field.is_empty() {
                e.field = path.display().to_string();
            }
            e
        })?;
        file.base_dir = path.parent().map(Path::to_path_buf);
        Ok(file)
    }

    /// The key files with relative paths resolved from the config file's folder.
    pub fn auth_files(&self) -> Option<AuthFiles> {
        let a = self.auth.as_ref()?;
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            match &self.base_dir {
                Some(base) if p.is_relative() => base.join(p),
                _ => p,
            }
        };
        Some(AuthFiles { member_key: resolve(&a.member_key), client_key: resolve(&a.client_key) })
    }

    /// The engine's datagram bound under a configured wire bound `wire`: sealing adds
    /// [`AUTH_OVERHEAD_BYTES`](fleet_engine::auth::AUTH_OVERHEAD_BYTES).
    fn engine_datagram_bytes(&self, field: &str, wire: usize) -> Result<usize, ConfigFileError> {
        use fleet_engine::auth::AUTH_OVERHEAD_BYTES;
        match self.auth {
            None => Ok(wire),
            Some(_) if wire > 2 * AUTH_OVERHEAD_BYTES => Ok(wire - AUTH_OVERHEAD_BYTES),
            Some(_) => Err(err(field, "too small for sealed datagrams")),
        }
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<ClusterFile, ConfigFileError> {
        toml::from_str(text).map_err(|e| err("", e.message().to_string()))
    }

    /// A loopback configuration: `replicas` RSL replicas from `base_port`, and as many KV
    /// hosts from `base_port + 100`.
    pub fn local(replicas: usize, base_port: u16) -> ClusterFile {
        let addrs = |base: u16| (0..replicas).map(|i| format!("127.0.0.1:{}", base + i as u16)).collect();
        ClusterFile {
            rsl: Some(RslSection {
                replicas: addrs(base_port),
                heartbeat_period_ms: None,
                baseline_view_timeout_ms: None,
                max_view_timeout_ms: None,
                max_batch_size: None,
                max_batch_delay_ms: None,
                max_log_length: None,
                max_datagram_bytes: Some(LOOPBACK_DATAGRAM_BYTES),
                retransmit_period_ms: None,
                lease_ms: None,
                clock_drift_ppm: None,
                max_keys: None,
                seeds: Vec::new(),
            }),
            kv: Some(KvSection {
                hosts: addrs(base_port + 100),
                max_value_bytes: None,
                max_datagram_bytes: None,
                max_keys: None,
            }),
            auth: None,
            base_dir: None,
        }
    }

    /// The file as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The validated RSL configuration.
    pub fn rsl(&self) -> Result<RslSetup, ConfigFileError> {
        let s = self.rsl.as_ref().ok_or_else(|| err("rsl", "the file has no [rsl] section"))?;
        let addrs = parse_addrs("rsl.replicas", &s.replicas)?;
        if addrs.len() > MAX_REPLICAS {
            return Err(err("rsl.replicas", format!("at most {MAX_REPLICAS} replicas are supported")));
        }
        let endpoints: Vec<_> = addrs.iter().map(|a| to_endpoint(*a)).collect();
        let mut config = RslConfig::<MAX_REPLICAS>::new(&endpoints).map_err(|e| err("rsl.replicas", e.to_string()))?;
        let d = Params::default();
        config.params = Params {
            heartbeat_period_ms: s.heartbeat_period_ms.unwrap_or(d.heartbeat_period_ms),
            baseline_view_timeout_ms: s.baseline_view_timeout_ms.unwrap_or(d.baseline_view_timeout_ms),
            max_view_timeout_ms: s.max_view_timeout_ms.unwrap_or(d.max_view_timeout_ms),
            max_batch_size: s.max_batch_size.unwrap_or(d.max_batch_size),
            max_batch_delay_ms: s.max_batch_delay_ms.unwrap_or(d.max_batch_delay_ms),
            max_log_length: s.max_log_length.unwrap_or(d.max_log_length),
            max_datagram_bytes: self.engine_datagram_bytes(
                "rsl.max_datagram_bytes",
                s.max_datagram_bytes.unwrap_or(d.max_datagram_bytes),
            )?,
            retransmit_period_ms: s.retransmit_period_ms.unwrap_or(d.retransmit_period_ms),
            state_chunks_per_step: d.state_chunks_per_step,
            lease_ms: s.lease_ms.unwrap_or(d.lease_ms),
            clock_drift_ppm: s.clock_drift_ppm.unwrap_or(d.clock_drift_ppm),
        };
        config.validate(SERVER_WINDOW, SERVER_DATAGRAM_BYTES).map_err(|e| match e {
            fleet_engine::ConfigError::Invalid(field) => err(format!("rsl.{field}"), rsl_range(field)),
            other => err("rsl.replicas", other.to_string()),
        })?;
        let auth_cluster = config.identity();
        let max_keys = s.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        let seeds = match s.seeds.is_empty() {
            true => Vec::new(),
            false => parse_addrs("rsl.seeds", &s.seeds)?,
        };
        Ok(RslSetup { addrs, config, max_keys, auth: self.auth_files(), auth_cluster, seeds })
    }

    /// The validated KV host addresses.
    pub fn kv_hosts(&self) -> Result<Vec<SocketAddr>, ConfigFileError> {
        let s = self.kv.as_ref().ok_or_else(|| err("kv", "the file has no [kv] section"))?;
        parse_addrs("kv.hosts", &s.hosts)
    }

    /// The validated KV configuration.
    pub fn kv(&self) -> Result<KvSetup, ConfigFileError> {
        let s = self.kv.as_ref().ok_or_else(|| err("kv", "the file has no [kv] section"))?;
        let addrs = parse_addrs("kv.hosts", &s.hosts)?;
        if addrs.len() > KV_MAX_HOSTS {
            return Err(err("kv.hosts", format!("at most {KV_MAX_HOSTS} hosts are supported")));
        }
        let endpoints: Vec<_> = addrs.iter().map(|a| to_endpoint(*a)).collect();
        let mut config = KvConfig::<KV_MAX_HOSTS>::new(&endpoints).map_err(|e| err("kv.hosts", e.to_string()))?;
        if let Some(v) = s.max_value_bytes {
            config.params.max_value_bytes = v;
        }
        let wire = s.max_datagram_bytes.unwrap_or(config.params.max_datagram_bytes);
        config.params.max_datagram_bytes = self.engine_datagram_bytes("kv.max_datagram_bytes", wire)?;
        config.validate(KV_DATAGRAM_BYTES).map_err(|e| match e {
            fleet_engine::ConfigError::Invalid(field) => err(format!("kv.{field}"), kv_range(field)),
            other => err("kv.hosts", other.to_string()),
        })?;
        Ok(KvSetup { addrs, config, max_keys: s.max_keys.unwrap_or(DEFAULT_MAX_KEYS), auth: self.auth_files() })
    }
}

/// A validated RSL setup.
#[derive(Debug, Clone)]
pub struct RslSetup {
    /// Replica socket addresses by id.
    pub addrs: Vec<SocketAddr>,
    /// The engine configuration.
    pub config: RslConfig<MAX_REPLICAS>,
    /// Key capacity of the replicated map.
    pub max_keys: usize,
    /// The key files, if datagrams are sealed (the engine's datagram bound already leaves
    /// room for the seal).
    pub auth: Option<AuthFiles>,
    /// The cluster identity seals bind: the configuration file's (epoch 0) in every
    /// epoch, so keys and seals stay valid across membership changes (the engine's own
    /// envelope tells epochs apart).
    pub auth_cluster: u32,
    /// More addresses asked for the current membership (`[rsl] seeds`): current replicas,
    /// once changes replaced the file's.
    pub seeds: Vec<SocketAddr>,
}

/// A validated KV setup.
#[derive(Debug, Clone)]
pub struct KvSetup {
    /// Host addresses by id.
    pub addrs: Vec<SocketAddr>,
    /// The engine configuration.
    pub config: KvConfig<KV_MAX_HOSTS>,
    /// Keys each host may store.
    pub max_keys: usize,
    /// The key files, if datagrams are sealed (as [`RslSetup::auth`]).
    pub auth: Option<AuthFiles>,
}

fn parse_addrs(field: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigFileError> {
    if list.is_empty() {
        return Err(err(field, "the list is empty"));
    }
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let a: SocketAddr = s
            .parse()
            .map_err(|_| err(format!("{field}[{i}]"), format!("`{s}` is not an address like 127.0.0.1:7000")))?;
        if out.contains(&a) {
            return Err(err(format!("{field}[{i}]"), format!("`{s}` appears twice")));
        }
        // These are the addresses peers and clients send to: port 0 and the wildcard
        // address name no one (a wildcard bind is `fleet ... serve --bind 0.0.0.0:PORT`).
        if a.port() == 0 {
            return Err(err(format!("{field}[{i}]"), format!("`{s}` has port 0: give the port the server listens on")));
        }
        if a.ip().is_unspecified() {
            return Err(err(
                format!("{field}[{i}]"),
                format!("`{s}` is the wildcard address: give the address others reach it at (bind with --bind)"),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

/// What an RSL parameter the engine refused must be, in this build.
fn rsl_range(field: &str) -> String {
    match field {
        "max_log_length" => format!("out of range: must be 1 to {SERVER_WINDOW}"),
        "max_datagram_bytes" => format!(
            "out of range: must be {} to {}",
            fleet_engine::rsl::config::MIN_DATAGRAM_BYTES,
            SERVER_DATAGRAM_BYTES
        ),
        "max_view_timeout_ms" => "out of range: must be at least baseline_view_timeout_ms".into(),
        "lease_ms" => "out of range: 0 (off), or from twice heartbeat_period_ms to baseline_view_timeout_ms".into(),
        "clock_drift_ppm" => {
            format!("out of range: at most {} with leases", fleet_engine::rsl::config::MAX_CLOCK_DRIFT_PPM)
        }
        _ => "out of range: must be at least 1".into(),
    }
}

/// What a KV parameter the engine refused must be, in this build.
fn kv_range(field: &str) -> String {
    match field {
        "max_datagram_bytes" => format!("out of range: must be at most {KV_DATAGRAM_BYTES} and hold a value"),
        "max_value_bytes" => "out of range: must be at least 1 and fit a datagram with its key".into(),
        _ => "out of range".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_config_round_trips_and_validates() {
        let f = ClusterFile::local(3, 7000);
        let parsed = ClusterFile::parse(&f.to_toml()).unwrap();
        assert_eq!(parsed, f);
        let setup = parsed.rsl().unwrap();
        assert_eq!(setup.addrs.len(), 3);
        assert_eq!(setup.config.params.max_datagram_bytes, LOOPBACK_DATAGRAM_BYTES);
    }

    #[test]
    fn errors_name_the_field() {
        let e = ClusterFile::parse("[rsl]\nreplicas = [\"127.0.0.1:1\", \"nope\"]\n").unwrap().rsl().unwrap_err();
        assert_eq!(e.field, "rsl.replicas[1]");
        let e =
            ClusterFile::parse("[rsl]\nreplicas = [\"127.0.0.1:1\"]\nmax_log_length = 0\n").unwrap().rsl().unwrap_err();
        assert_eq!(e.field, "rsl.max_log_length");
        for bad in ["127.0.0.1:0", "0.0.0.0:7000", "[::]:7000"] {
            let text = format!("[rsl]\nreplicas = [\"127.0.0.1:1\", \"{bad}\"]\n");
            let e = ClusterFile::parse(&text).unwrap().rsl().unwrap_err();
            assert_eq!(e.field, "rsl.replicas[1]", "{bad}");
        }
        let e = ClusterFile::parse("[rsl]\nreplicas = []\nbogus = 1\n").unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
    }
}
