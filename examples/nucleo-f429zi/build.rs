//! Puts memory.x on the linker's search path (cortex-m-rt's link.x includes it), compiles
//! the members' addresses in (`FLEET_MEMBERS`, three IPv4 addresses separated by commas;
//! default `10.0.0.1,10.0.0.2,10.0.0.3`), and compiles the cluster's keys in:
//! `FLEET_KEYS_DIR` names a folder with `member.key` and `client.key` (as
//! `fleet config local --keys DIR` writes them); without it, fresh keys are drawn from the
//! OS's random source into `OUT_DIR/keys` (a firmware that can talk only to servers given
//! those files). The same approach as `examples/firmware/build.rs`.
use std::{env, fs, path::Path, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=FLEET_KEYS_DIR");
    println!("cargo:rerun-if-env-changed=FLEET_MEMBERS");

    let members = env::var("FLEET_MEMBERS").unwrap_or_else(|_| "10.0.0.1,10.0.0.2,10.0.0.3".into());
    let addrs: Vec<[u8; 4]> = members
        .split(',')
        .map(|a| {
            let ip: std::net::Ipv4Addr =
                a.trim().parse().unwrap_or_else(|_| panic!("FLEET_MEMBERS: `{a}` is not an IPv4 address"));
            ip.octets()
        })
        .collect();
    if addrs.len() != 3 {
        panic!("FLEET_MEMBERS: three addresses, one per member (got {})", addrs.len());
    }
    let code = format!(
        "/// Member addresses (`FLEET_MEMBERS` at build time); every member listens on `RSL_PORT`.\n\
         const ADDRS: [[u8; 4]; MEMBERS] = {addrs:?};\n"
    );
    fs::write(out.join("members.rs"), code).expect("write members.rs");

    let dir = match env::var_os("FLEET_KEYS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // Named after the MAC, so that keys drawn for another one are never read.
            let dir = out.join("keys-siphash24");
            fs::create_dir_all(&dir).expect("keys folder");
            for (name, id) in [("member.key", 1), ("client.key", 1)] {
                let path = dir.join(name);
                if !path.exists() {
                    let mut key = [0u8; 16];
                    getrandom::fill(&mut key).expect("the OS's random source");
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    fs::write(&path, format!("{id} {hex}\n")).expect("write a key file");
                }
            }
            println!("cargo:warning=FLEET_KEYS_DIR not set: sealed with fresh keys in {}", dir.display());
            dir
        }
    };
    let member = keys(&dir.join("member.key"));
    let client = keys(&dir.join("client.key"));
    let code = format!(
        "/// The member keys compiled in (id, bytes); the first seals.\n\
         const MEMBER_KEYS: &[(u8, [u8; 16])] = &{member:?};\n\
         /// The client keys compiled in (id, bytes); the first seals.\n\
         const CLIENT_KEYS: &[(u8, [u8; 16])] = &{client:?};\n"
    );
    fs::write(out.join("keys.rs"), code).expect("write keys.rs");
}

/// The one or two keys of a key file (`<id> <32 hex digits>` per line, `#` comments).
fn keys(path: &Path) -> Vec<(u8, [u8; 16])> {
    println!("cargo:rerun-if-changed={}", path.display());
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| -> ! { panic!("{} line {}: {what}", path.display(), i + 1) };
        let mut fields = line.split_whitespace();
        let id: u8 = fields.next().and_then(|f| f.parse().ok()).unwrap_or_else(|| bad("a key id 0-255 first"));
        let hex = fields.next().unwrap_or_else(|| bad("32 hex digits after the id"));
        if hex.len() != 32 || fields.next().is_some() {
            bad("expected `<id> <32 hex digits>`");
        }
        let mut key = [0u8; 16];
        for (j, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * j..2 * j + 2], 16).unwrap_or_else(|_| bad("not hex"));
        }
        keys.push((id, key));
    }
    if keys.is_empty() || keys.len() > 2 {
        panic!("{}: one key, or two during a rotation", path.display());
    }
    keys
}
