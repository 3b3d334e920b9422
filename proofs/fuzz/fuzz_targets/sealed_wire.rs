//! The MAC check itself, without the key: arbitrary bytes from any address never open at
//! any host, and a real sealed datagram, altered anywhere (bits flipped by the input, cut
//! short) or sent from or to another address, opens only unaltered at its own receiver
//! from its own sender. Never a panic on any input.
#![no_main]

use fleet_engine::Endpoint;
use fleet_fuzz::{client_ep, guard, open, replica_ep, seal, MEMBERS};
use libfuzzer_sys::fuzz_target;

const CLUSTER: u32 = 0x00c0_ffee;

fn endpoint(code: u8) -> Endpoint {
    match code % 6 {
        c @ 0..=2 => replica_ep(usize::from(c)),
        3 | 4 => client_ep(usize::from(code % 2)),
        _ => Endpoint::v4([192, 0, 2, 1], 1),
    }
}

fuzz_target!(|input: (u8, u8, u8, Vec<u8>, Vec<u8>)| {
    let (f, t, cut, bytes, mask) = input;
    let (from, to) = (endpoint(f), endpoint(t));
    // Raw bytes: nobody sealed them, so they must not open (`open` panics if they do).
    let _ = open(CLUSTER, &MEMBERS, from, to, &bytes, false);
    // A key holder's datagram, then what an attacker makes of it.
    let (sender, receiver) = (endpoint(f >> 3), endpoint(t >> 3));
    let wire = seal(CLUSTER, &MEMBERS, sender, receiver, &bytes);
    let mut altered = wire.clone();
    for (b, m) in altered.iter_mut().zip(mask.iter()) {
        *b ^= m;
    }
    if usize::from(cut) < altered.len() && cut & 1 == 1 {
        altered.truncate(usize::from(cut));
    }
    let genuine = altered == wire && from == sender && to == receiver;
    match (guard(CLUSTER, to, &MEMBERS).check(from, &altered), genuine) {
        (Ok(inner), true) => assert_eq!(inner, &bytes[..], "opened to other bytes"),
        (Ok(_), false) => panic!("an altered or redirected datagram opened: {altered:02x?}"),
        (Err(e), true) => panic!("a genuine datagram was refused: {e}"),
        (Err(_), false) => {}
    }
});
