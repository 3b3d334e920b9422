use super::*;
use crate::Endpoint;

const CLUSTER: u32 = 0x5eed_0001;
const A: Endpoint = Endpoint::v4([10, 0, 0, 1], 7000);
const B: Endpoint = Endpoint::v4([10, 0, 0, 2], 7000);
const CLIENT: Endpoint = Endpoint::v4([10, 0, 0, 9], 40000);
const MEMBERS: [Endpoint; 2] = [A, B];

fn key(id: u8, fill: u8) -> Key {
    Key::new(id, [fill; KEY_BYTES])
}

fn member_ring() -> Keyring {
    Keyring { cluster: CLUSTER, member: Some(KeySet::single(key(1, 0x11))), client: KeySet::single(key(2, 0x22)) }
}

fn client_ring() -> Keyring {
    Keyring { cluster: CLUSTER, member: None, client: KeySet::single(key(2, 0x22)) }
}

fn member(me: Endpoint) -> Guard<'static> {
    Guard::new(member_ring(), me, Role::Member(&MEMBERS))
}

fn sealed(guard: &mut Guard<'_>, to: Endpoint, inner: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = guard.seal(to, inner, &mut buf).unwrap();
    assert_eq!(n, inner.len() + AUTH_OVERHEAD_BYTES);
    buf[..n].to_vec()
}

extern crate std;
use std::vec::Vec;

#[test]
fn a_sealed_datagram_opens_at_its_receiver_only() {
    let (mut a, mut b) = (member(A), member(B));
    let d = sealed(&mut a, B, b"2b vote");
    assert_eq!(b.open(A, &d), Ok(&b"2b vote"[..]));
    // The same bytes from another address (a spoofed replay) or at another receiver.
    assert_eq!(b.open(CLIENT, &d), Err(AuthError::UnknownKey(1)), "from a client address, only client keys open");
    assert_eq!(b.open(B, &d), Err(AuthError::BadTag), "the sender's address is bound");
    assert_eq!(a.open(A, &d), Err(AuthError::BadTag), "the receiver's address is bound");
    assert_eq!(b.stats(), AuthStats { opened: 1, unknown_key: 1, bad_tag: 1, ..AuthStats::default() });
    assert_eq!(b.stats().refused(), 2);
}

#[test]
fn every_flipped_bit_and_every_truncation_is_refused() {
    let (mut a, b) = (member(A), member(B));
    let d = sealed(&mut a, B, b"heartbeat view 3");
    for i in 0..d.len() {
        for bit in 0..8 {
            let mut t = d.clone();
            t[i] ^= 1 << bit;
            assert!(b.check(A, &t).is_err(), "byte {i} bit {bit}");
        }
    }
    for n in 0..d.len() {
        assert!(b.check(A, &d[..n]).is_err(), "truncated to {n}");
    }
    let mut longer = d.clone();
    longer.push(0);
    assert_eq!(b.check(A, &longer), Err(AuthError::BadTag));
}

#[test]
fn unsealed_short_and_foreign_datagrams_are_refused_with_their_reason() {
    let b = member(B);
    assert_eq!(b.check(A, &[0xF1, crate::wire::WIRE_VERSION, b'R']), Err(AuthError::TooShort));
    let mut plain = [0u8; 40];
    plain[..3].copy_from_slice(&[0xF1, crate::wire::WIRE_VERSION, b'R']);
    assert_eq!(b.check(A, &plain), Err(AuthError::Unsealed));
    // Another cluster with the same keys.
    let mut other = Guard::new(Keyring { cluster: CLUSTER + 1, ..member_ring() }, A, Role::Member(&MEMBERS));
    assert_eq!(b.check(A, &sealed(&mut other, B, b"1a")), Err(AuthError::BadTag));
    // Another key under the same id.
    let ring = Keyring { member: Some(KeySet::single(key(1, 0x99))), ..member_ring() };
    let mut impostor = Guard::new(ring, A, Role::Member(&MEMBERS));
    assert_eq!(b.check(A, &sealed(&mut impostor, B, b"1a")), Err(AuthError::BadTag));
    // A key id nobody holds.
    let ring = Keyring { member: Some(KeySet::single(key(7, 0x11))), ..member_ring() };
    let mut retired = Guard::new(ring, A, Role::Member(&MEMBERS));
    assert_eq!(b.check(A, &sealed(&mut retired, B, b"1a")), Err(AuthError::UnknownKey(7)));
}

#[test]
fn a_client_key_cannot_make_a_member_datagram() {
    let b = member(B);
    // A client-key holder seals as if it were member A (it can spoof A's address).
    let mut forger = Guard::new(client_ring(), A, Role::Client);
    let d = sealed(&mut forger, B, b"2a forged");
    assert_eq!(b.check(A, &d), Err(AuthError::UnknownKey(2)), "member datagrams need a member key");
    // Even if the ids collide, the class is bound into the tag.
    let ring = Keyring { client: KeySet::single(key(1, 0x11)), ..client_ring() };
    let mut forger = Guard::new(ring, A, Role::Client);
    assert_eq!(b.check(A, &sealed(&mut forger, B, b"2a forged")), Err(AuthError::BadTag));
    // From its own address, the client's datagram is a client's, and opens.
    let mut client = Guard::new(client_ring(), CLIENT, Role::Client);
    let d = sealed(&mut client, B, b"request");
    assert_eq!(b.check(CLIENT, &d), Ok(&b"request"[..]));
    // The reply opens at the client, which holds no member key.
    let mut b = member(B);
    let reply = sealed(&mut b, CLIENT, b"reply");
    assert_eq!(client.check(B, &reply), Ok(&b"reply"[..]));
}

#[test]
fn a_rotation_seals_with_the_first_key_and_opens_both() {
    let old = key(1, 0x11);
    let new = key(3, 0x33);
    let both = KeySet::rotating(new.clone(), old.clone()).unwrap();
    assert_eq!(KeySet::rotating(key(1, 0), key(1, 1)), Err(KeyError::DuplicateId(1)));
    let ring = |set: KeySet| Keyring { member: Some(set), ..member_ring() };
    let mut rotated = Guard::new(ring(both.clone()), A, Role::Member(&MEMBERS));
    let mut old_only = Guard::new(ring(KeySet::single(old)), B, Role::Member(&MEMBERS));
    let mut new_only = Guard::new(ring(KeySet::single(new)), B, Role::Member(&MEMBERS));
    let d = sealed(&mut rotated, B, b"x");
    assert_eq!(d[3], 3, "sealed under the first key");
    assert!(new_only.open(A, &d).is_ok());
    assert_eq!(old_only.open(A, &d), Err(AuthError::UnknownKey(3)));
    let mut rotated_b = Guard::new(ring(both), B, Role::Member(&MEMBERS));
    let mut old_a = Guard::new(ring(KeySet::single(key(1, 0x11))), A, Role::Member(&MEMBERS));
    assert!(rotated_b.open(A, &sealed(&mut old_a, B, b"y")).is_ok(), "the old key still opens");
}

#[test]
fn sealing_into_a_small_buffer_fails_cleanly_and_keys_never_print() {
    let mut a = member(A);
    let mut small = [0u8; AUTH_OVERHEAD_BYTES + 2];
    assert_eq!(a.seal(B, b"abc", &mut small), Err(crate::wire::EncodeError::BufferFull));
    assert_eq!(a.stats().sealed, 0);
    let shown = std::format!("{:?}", member_ring());
    assert!(!shown.contains("17") && shown.contains("id: 1"), "{shown}");
}

#[test]
fn refusal_notices_round_trip_and_are_shorter_than_any_sealed_datagram() {
    let pairs = [(AuthError::UnknownKey(9), RefusalReason::UnknownKey(9)), (AuthError::BadTag, RefusalReason::BadTag)];
    for (e, why) in pairs {
        let n = refusal_notice(e).unwrap();
        assert_eq!(parse_refusal_notice(&n), Some(why));
        assert!(n.len() < AUTH_OVERHEAD_BYTES);
        // A notice never opens as a datagram, and provokes no notice in return.
        let mut b = member(B);
        assert_eq!(b.open(A, &n), Err(AuthError::Notice(why)));
        assert_eq!(refusal_notice(AuthError::Notice(why)), None);
        assert_eq!((b.stats().notices, b.stats().refused()), (1, 0), "a notice is not a forgery");
    }
    assert_eq!(refusal_notice(AuthError::Unsealed), None);
    assert_eq!(refusal_notice(AuthError::TooShort), None);
    assert_eq!(parse_refusal_notice(&[0xF1, crate::wire::WIRE_VERSION, NOTICE_PROTOCOL, 2, 1]), None);
}

/// The sealed bytes of one fixed datagram: the format is a wire format, so every target and
/// every build must produce exactly these (the same vector runs on Cortex-M4F under QEMU).
/// The tag is standard SipHash-2-4, as an independent reference implementation computes
/// it (checked against the SipHash paper's test vector first):
/// `siphash24(b"\x11" * 16, b"fleet-auth-1" + cluster_le + b"M\x01" + from + to + b"abc")`,
/// little-endian, an endpoint being `4, octets, port_le`.
pub(crate) const KNOWN_SEALED: [u8; 15] =
    [0xf1, 0x04, 0x41, 0x01, b'a', b'b', b'c', 0xd1, 0x3a, 0x28, 0xc5, 0x2f, 0xb9, 0xdb, 0x24];

#[test]
fn the_seal_of_a_fixed_datagram_is_a_known_answer() {
    let mut a = member(A);
    let got = sealed(&mut a, B, b"abc");
    assert_eq!(got, KNOWN_SEALED, "{got:02x?}");
}

#[test]
fn a_server_that_is_not_a_member_talks_to_members_as_one_and_a_client_key_never_does() {
    const LEARNER: Endpoint = Endpoint::v4([10, 0, 0, 5], 7000);
    const LEARNS: [Endpoint; 3] = [LEARNER, A, B];
    let mut a = member(A);
    let mut learner = Guard::new(member_ring(), LEARNER, Role::Member(&LEARNS));
    let ask = sealed(&mut learner, A, b"state request");
    assert_eq!(a.open(LEARNER, &ask), Ok(&b"state request"[..]), "a member key from a non-member address");
    let supply = sealed(&mut a, LEARNER, b"supply");
    assert_eq!(learner.open(A, &supply), Ok(&b"supply"[..]), "sealed for it as a member from then on");
    assert_eq!(a.stats(), AuthStats { opened: 1, sealed: 1, ..AuthStats::default() });
    // A client key at another non-member address stays a client's; at the server's address
    // it is refused (that address holds a member key).
    let mut client = Guard::new(client_ring(), CLIENT, Role::Client);
    assert_eq!(a.open(CLIENT, &sealed(&mut client, A, b"request")), Ok(&b"request"[..]));
    let reply = sealed(&mut a, CLIENT, b"reply");
    assert_eq!(client.open(A, &reply), Ok(&b"reply"[..]), "clients are still sealed for with the client key");
    let mut spoof = Guard::new(client_ring(), LEARNER, Role::Client);
    assert_eq!(a.open(LEARNER, &sealed(&mut spoof, A, b"forged")), Err(AuthError::UnknownKey(2)));
    // A client key never passes for a member, whatever address it claims.
    let mut forger = Guard::new(client_ring(), A, Role::Client);
    assert_eq!(member(B).open(A, &sealed(&mut forger, B, b"2b")), Err(AuthError::UnknownKey(2)));
    // The memory is bounded: the oldest server address is forgotten first.
    for i in 0..MAX_SERVER_PEERS as u8 {
        let other = Endpoint::v4([10, 0, 1, i], 7000);
        let mut server = Guard::new(member_ring(), other, Role::Member(&LEARNS));
        assert!(a.open(other, &sealed(&mut server, A, b"ask")).is_ok());
    }
    assert_eq!(a.class_with(LEARNER), Class::Client, "forgotten after {MAX_SERVER_PEERS} others");
}

/// Members named after the guard was made seal and open as members; naming one again makes
/// it the newest, and the one named longest ago is forgotten first.
#[test]
fn members_added_by_a_membership_change_are_members_and_bounded() {
    let mut a = member(A);
    let joined = Endpoint::v4([10, 0, 2, 1], 7000);
    assert_eq!(a.class_with(joined), Class::Client, "not named yet");
    a.add_member(joined);
    assert_eq!(a.class_with(joined), Class::Member);
    let mut new_member = Guard::new(member_ring(), joined, Role::Member(&MEMBERS));
    assert_eq!(a.open(joined, &sealed(&mut new_member, A, b"2b")), Ok(&b"2b"[..]), "opened as a member's");
    let others = |i: u8| Endpoint::v4([10, 0, 3, i], 7000);
    for i in 0..MAX_ADDED_MEMBERS as u8 - 1 {
        a.add_member(others(i));
    }
    a.add_member(joined);
    a.add_member(others(200));
    assert_eq!(a.class_with(joined), Class::Member, "named again: the newest, kept");
    assert_eq!(a.class_with(others(0)), Class::Client, "the one named longest ago is forgotten");
    assert_eq!(a.class_with(others(1)), Class::Member);
    a.add_member(A);
    assert_eq!(a.class_with(others(1)), Class::Member, "a member its role names takes no room");
    let mut client = Guard::new(client_ring(), CLIENT, Role::Client);
    client.add_member(joined);
    assert_eq!(client.class_with(joined), Class::Client, "a client's guard names no members");
    let mut fixed = Guard::fixed_membership(member_ring(), A, Role::Member(&MEMBERS));
    fixed.add_member(joined);
    assert_eq!(fixed.class_with(joined), Class::Client, "a fixed membership has no room for more");
    assert_eq!(fixed.class_with(B), Class::Member);
}
