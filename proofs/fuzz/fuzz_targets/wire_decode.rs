//! Arbitrary bytes into the wire decoder: it never panics, and whatever decodes re-encodes
//! to an equivalent message (decode(encode(m)) == m, and encoding is then a fixed point).
//! The hand decoder replicas and clients use (`rsl::msg_codec`) gives postcard's verdict.
#![no_main]

use fleet_engine::rsl::RslMsg;
use fleet_engine::rsl::{batch, msg_codec};
use fleet_engine::wire::{self, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(msg_codec::decode_rsl(data), wire::decode_rsl::<RslMsg<'_>>(data), "the hand decoder differs");
    for protocol in [Protocol::Rsl, Protocol::Kv] {
        let Ok(msg) = wire::decode::<RslMsg<'_>>(protocol, data) else { continue };
        let mut buf = vec![0u8; data.len() + 64];
        let n = wire::encode(protocol, &msg, &mut buf).expect("a decoded message re-encodes");
        let again = wire::decode::<RslMsg<'_>>(protocol, &buf[..n]).expect("a re-encoded message decodes");
        assert_eq!(msg, again, "decode(encode(m)) != m");
        let mut buf2 = vec![0u8; n + 8];
        let n2 = wire::encode(protocol, &again, &mut buf2).expect("re-encodes");
        assert_eq!(&buf[..n], &buf2[..n2], "encoding is not a fixed point");
        assert!(n <= data.len(), "the canonical encoding is never longer than an accepted one");
        // Batches inside messages: validation never panics and agrees with iteration.
        if let RslMsg::TwoA { batch: b, .. } = msg {
            if let Ok(count) = batch::validate(b.0, usize::MAX) {
                assert_eq!(count, batch::entries(b.0).count());
            }
        }
    }
});
