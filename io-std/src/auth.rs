//! Keys in practice: key files (generated from the OS's random source, never world-readable),
//! the keyrings members and clients build from them, and the refusal notice that lets a
//! client with the wrong key say so instead of timing out silently.
//!
//! A key file is text, one key per line: `<id> <32 hex digits>`; `#` starts a comment. The
//! first key seals, a second one (during a rotation) is also accepted:
//!
//! ```text
//! # fleet member key
//! 2 9f0c...   (the new key: seals)
//! 1 41d7...   (the old key: still accepted until every node has the new one)
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fleet_engine::auth::{Key, KeySet, Keyring, KEY_BYTES};

use crate::config::ConfigFileError;
use crate::error::ServerError;
use crate::net::event_loop::LoopAuth;
use crate::net::to_endpoint;

/// The key files of a cluster (the `[auth]` section), as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFiles {
    /// Keys between members: only replicas and KV hosts read this file.
    pub member_key: PathBuf,
    /// Keys between clients and members: every node reads this file.
    pub client_key: PathBuf,
}

impl AuthFiles {
    /// The keyring of a member of the cluster with identity `cluster`.
    pub fn member_keyring(&self, cluster: u32) -> Result<Keyring, ConfigFileError> {
        Ok(Keyring {
            cluster,
            member: Some(load_key_file(&self.member_key)?),
            client: load_key_file(&self.client_key)?,
        })
    }

    /// The keyring of a client of the cluster with identity `cluster` (no member keys).
    pub fn client_keyring(&self, cluster: u32) -> Result<Keyring, ConfigFileError> {
        Ok(Keyring { cluster, member: None, client: load_key_file(&self.client_key)? })
    }
}

/// The event loop's keys for a member at one of `members` in the cluster with identity
/// `cluster`, if the cluster seals its datagrams; a key file's problem is named.
pub fn member_loop_auth(
    files: Option<&AuthFiles>,
    cluster: u32,
    members: &[std::net::SocketAddr],
) -> Result<Option<LoopAuth>, ServerError> {
    let Some(files) = files else { return Ok(None) };
    let keys = files.member_keyring(cluster).map_err(|e| ServerError::Config(e.to_string()))?;
    let key_files = format!("{} and {}", files.member_key.display(), files.client_key.display());
    Ok(Some(LoopAuth { keys, members: members.iter().map(|a| to_endpoint(*a)).collect(), key_files }))
}

fn key_err(path: &Path, message: impl Into<String>) -> ConfigFileError {
    ConfigFileError { field: path.display().to_string(), message: message.into() }
}

/// Reads a key file: refuses one that group or others may read, and names the file and
/// line of anything malformed.
pub fn load_key_file(path: &Path) -> Result<KeySet, ConfigFileError> {
    let meta = std::fs::metadata(path).map_err(|e| key_err(path, format!("cannot read the key file: {e}")))?;
    check_private(path, &meta)?;
    let text = std::fs::read_to_string(path).map_err(|e| key_err(path, format!("cannot read the key file: {e}")))?;
    parse_key_file(&text).map_err(|(line, message)| match line {
        0 => key_err(path, message),
        n => key_err(path, format!("line {n}: {message}")),
    })
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), ConfigFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_err(
            path,
            format!(
                "the key file may be read by others (mode {mode:03o}); run `chmod 600 {}` and keep it secret",
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), ConfigFileError> {
    Ok(())
}

/// Parses key-file text: one or two keys (the first seals). Errors carry the 1-based line
/// (0 when about the whole file).
pub fn parse_key_file(text: &str) -> Result<KeySet, (usize, String)> {
    let mut keys = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let n = i + 1;
        let mut fields = line.split_whitespace();
        let (Some(id), Some(hex), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err((n, "expected `<id> <32 hex digits>`".into()));
        };
        let id: u8 = id.parse().map_err(|_| (n, format!("the key id `{id}` is not a number from 0 to 255")))?;
        keys.push(Key::new(id, parse_hex_key(hex).map_err(|m| (n, m))?));
    }
    let mut keys = keys.into_iter();
    match (keys.next(), keys.next(), keys.next()) {
        (None, _, _) => Err((0, "the key file holds no key".into())),
        (Some(one), None, _) => Ok(KeySet::single(one)),
        (Some(sealing), Some(also), None) => KeySet::rotating(sealing, also).map_err(|e| (0, e.to_string())),
        (Some(_), Some(_), Some(_)) => {
            Err((0, "more than two keys: a rotation needs the new key and the old one, no more".into()))
        }
    }
}

fn parse_hex_key(hex: &str) -> Result<[u8; KEY_BYTES], String> {
    if hex.len() != 2 * KEY_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the key must be {} hex digits ({KEY_BYTES} bytes), found {} characters{}",
            2 * KEY_BYTES,
            hex.len(),
            if hex.bytes().all(|b| b.is_ascii_hexdigit()) { "" } else { " with non-hex ones" }
        ));
    }
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// A new key file's text: one fresh key from the OS's random source, with id `id`.
pub fn new_key_text(id: u8, what: &str) -> std::io::Result<String> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(format!("no random source: {e}")))?;
    let mut text = format!("# fleet {what} key: keep secret (mode 600)\n{id} ");
    for b in key {
        let _ = write!(text, "{b:02x}");
    }
    text.push('\n');
    Ok(text)
}

/// Writes a new key file at `path` (mode 600), refusing to replace an existing one.
pub fn write_new_key_file(path: &Path, id: u8, what: &str) -> Result<(), ConfigFileError> {
    use std::io::Write as _;
    let text = new_key_text(id, what).map_err(|e| key_err(path, e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => key_err(path, "a key file is already there; not replacing it"),
        _ => key_err(path, format!("cannot create the key file: {e}")),
    })?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| key_err(path, e.to_string()))
}

/// Creates a folder with a new member key file and a new client key file (key id 1 each)
/// and returns the `[auth]` section naming them by absolute path.
pub fn new_key_files(dir: &Path) -> Result<crate::config::AuthSection, ConfigFileError> {
    std::fs::create_dir_all(dir).map_err(|e| key_err(dir, format!("cannot create the key folder: {e}")))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| key_err(dir, e.to_string()))?;
    let (member, client) = (dir.join("member.key"), dir.join("client.key"));
    write_new_key_file(&member, 1, "member")?;
    write_new_key_file(&client, 1, "client")?;
    Ok(crate::config::AuthSection {
        member_key: member.display().to_string(),
        client_key: client.display().to_string(),
    })
}

/// A client's seal: its guard, room to seal into, and the last refusal notice a member sent.
pub struct ClientSeal {
    guard: fleet_engine::auth::Guard<'static>,
    sealed: Vec<u8>,
    refused: Option<(std::net::SocketAddr, fleet_engine::auth::RefusalReason)>,
    key_file: PathBuf,
}

impl ClientSeal {
    /// A seal for the client at `me` (its socket's concrete local address: what members see).
    pub fn new(files: &AuthFiles, cluster: u32, me: std::net::SocketAddr) -> Result<ClientSeal, ConfigFileError> {
        use fleet_engine::auth::{Guard, Role};
        let keys = files.client_keyring(cluster)?;
        Ok(ClientSeal {
            guard: Guard::new(keys, to_endpoint(me), Role::Client),
            sealed: Vec::new(),
            refused: None,
            key_file: files.client_key.clone(),
        })
    }

    /// `datagram` sealed for `to`, or `None` if it cannot be (never for a client's own
    /// datagrams, which are bounded by the engine's datagram size).
    pub fn seal(&mut self, to: fleet_engine::Endpoint, datagram: &[u8]) -> Option<&[u8]> {
        self.sealed.resize(datagram.len() + fleet_engine::auth::AUTH_OVERHEAD_BYTES, 0);
        let n = self.guard.seal(to, datagram, &mut self.sealed).ok()?;
        Some(&self.sealed[..n])
    }

    /// The inner datagram, or `None` if refused (a refusal notice is remembered).
    pub fn open<'d>(&mut self, from: std::net::SocketAddr, datagram: &'d [u8]) -> Option<&'d [u8]> {
        match self.guard.open(to_endpoint(from), datagram) {
            Ok(inner) => Some(inner),
            Err(fleet_engine::auth::AuthError::Notice(why)) => {
                self.refused = Some((from, why));
                None
            }
            Err(_) => None,
        }
    }

    /// The error to report instead of a timeout if a member said it refused this client's
    /// key (then forgets it).
    pub fn take_refusal(&mut self) -> Option<crate::error::CallError> {
        let (host, why) = self.refused.take()?;
        Some(crate::error::CallError::KeyRefused { host, reason: why.to_string(), key_file: self.key_file.clone() })
    }

    /// What the guard counted.
    pub fn stats(&self) -> fleet_engine::auth::AuthStats {
        self.guard.stats()
    }
}

/// A client's socket and, on a sealed cluster (`files`), its seal: bound to `plain_bind` on an
/// unsealed cluster, to the concrete address members see on a sealed one ([`client_socket`]).
pub fn client_socket_and_seal(
    files: Option<&AuthFiles>,
    cluster: u32,
    servers: &[std::net::SocketAddr],
    plain_bind: &str,
) -> Result<(std::net::UdpSocket, Option<ClientSeal>), crate::error::CallError> {
    use crate::error::CallError;
    let Some(files) = files else {
        return Ok((std::net::UdpSocket::bind(plain_bind).map_err(CallError::Io)?, None));
    };
    let socket = client_socket(servers).map_err(CallError::Io)?;
    let me = socket.local_addr().map_err(CallError::Io)?;
    let seal = ClientSeal::new(files, cluster, me).map_err(CallError::Keys)?;
    Ok((socket, Some(seal)))
}

/// A UDP socket for a client of servers at `servers`, bound to the concrete local address
/// the first server is reached from: a sealed datagram binds its sender's address, so a
/// client must know the address members see (a wildcard bind would not say).
pub fn client_socket(servers: &[std::net::SocketAddr]) -> std::io::Result<std::net::UdpSocket> {
    use std::net::{SocketAddr, UdpSocket};
    let Some(first) = servers.first() else { return UdpSocket::bind("127.0.0.1:0") };
    let any: SocketAddr =
        if first.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().map_err(std::io::Error::other)?;
    let probe = UdpSocket::bind(any)?;
    probe.connect(first)?;
    UdpSocket::bind(SocketAddr::new(probe.local_addr()?.ip(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn key_files_parse_one_or_two_keys_and_name_the_bad_line() {
        let one = parse_key_file(&format!("# comment\n\n7 {HEX}\n")).unwrap();
        assert_eq!(one.sealing().id(), 7);
        let two = parse_key_file(&format!("2 {HEX}\n1 {HEX} # old\n")).unwrap();
        assert_eq!((two.sealing().id(), two.accepting(1).map(Key::id)), (2, Some(1)));
        let cases = [
            (String::new(), 0, "holds no key"),
            (format!("1 {}\n", &HEX[..10]), 1, "32 hex digits"),
            (format!("\n1 {}zz\n", &HEX[..30]), 2, "non-hex"),
            (format!("300 {HEX}\n"), 1, "key id"),
            (format!("1 {HEX} extra\n"), 1, "expected"),
            (format!("1 {HEX}\n1 {HEX}\n"), 0, "id 1"),
            (format!("1 {HEX}\n2 {HEX}\n3 {HEX}\n"), 0, "more than two"),
        ];
        for (text, line, says) in cases {
            let (got_line, message) = parse_key_file(&text).unwrap_err();
            assert_eq!(got_line, line, "{text:?}: {message}");
            assert!(message.contains(says), "{text:?}: {message}");
        }
    }

    #[test]
    fn generated_files_are_private_fresh_and_never_replaced() {
        let dir = std::env::temp_dir().join(format!("fleet-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.key"), dir.join("b.key"));
        write_new_key_file(&a, 1, "member").unwrap();
        write_new_key_file(&b, 1, "member").unwrap();
        let (ka, kb) = (load_key_file(&a).unwrap(), load_key_file(&b).unwrap());
        assert_ne!(ka, kb, "two draws from the random source differ");
        let again = write_new_key_file(&a, 1, "member").unwrap_err();
        assert!(again.message.contains("already there"), "{again}");
        assert_eq!(load_key_file(&a).unwrap(), ka, "unchanged");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_key_file(&a).unwrap_err();
            assert!(e.field.ends_with("a.key") && e.message.contains("chmod 600"), "{e}");
        }
        let e = load_key_file(&dir.join("missing.key")).unwrap_err();
        assert!(e.field.ends_with("missing.key") && e.message.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
