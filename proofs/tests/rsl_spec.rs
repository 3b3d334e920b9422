//! The RSL service spec: batches execute atomically, replies match, and the checker works
//! over it (a client operation is a batch).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fleet_proofs::linearizability::{check, CheckError, Operation};
use fleet_proofs::spec::bytes_kv::{BytesKvApp, BytesKvOp, BytesKvRet, EncodedApp, RequestCodec};
use fleet_proofs::spec::rsl::{AppReply, AppRequest, CounterApp, RslSpec};
use fleet_proofs::spec::SeqSpec;
use fleet_proofs::Budget;

fn req(client: u64, seqno: u64) -> AppRequest {
    AppRequest { client, seqno, request: vec![] }
}

fn count(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

#[test]
fn counter_batch_executes_in_order_with_matching_replies() {
    let mut spec = RslSpec::new(CounterApp::default());
    let replies = spec.execute_batch(&[req(1, 1), req(2, 1), req(1, 2)]);
    let expect = vec![
        AppReply { client: 1, seqno: 1, reply: count(1) },
        AppReply { client: 2, seqno: 1, reply: count(2) },
        AppReply { client: 1, seqno: 2, reply: count(3) },
    ];
    assert_eq!(replies, expect);
    assert_eq!(spec.app, CounterApp(3));
    assert_eq!(spec.requests.len(), 3);
    for r in &expect {
        assert!(spec.reply_is_justified(r));
    }
    assert!(!spec.reply_is_justified(&AppReply { client: 2, seqno: 1, reply: count(1) }));
}

#[test]
fn counter_saturates() {
    let mut app = RslSpec::new(CounterApp(u64::MAX - 1));
    let r = app.execute_batch(&[req(1, 1), req(1, 2)]);
    assert_eq!(r[1].reply, count(u64::MAX));
}

fn batch_op(
    batch: Vec<AppRequest>,
    at: (u64, u64),
    replies: Option<Vec<u64>>,
) -> Operation<Vec<AppRequest>, Vec<AppReply>> {
    let complete = replies.map(|rs| {
        let rs = batch.iter().zip(rs).map(|(q, n)| AppReply { client: q.client, seqno: q.seqno, reply: count(n) });
        (at.1, rs.collect())
    });
    Operation { client: batch[0].client, op: batch, invoke_us: at.0, complete }
}

#[test]
fn a_batch_is_atomic_for_the_checker() {
    let init = RslSpec::new(CounterApp::default());
    // A two-request batch runs concurrently with a one-request batch. The single request
    // may see 0 or 2 increments before it, never 1.
    for (single, pair, ok) in [(1, [2, 3], true), (3, [1, 2], true), (2, [1, 3], false)] {
        let h = [
            batch_op(vec![req(1, 1), req(1, 2)], (0, 100), Some(pair.to_vec())),
            batch_op(vec![req(2, 1)], (10, 90), Some(vec![single])),
        ];
        let out = check(&init, &h, &Budget::steps(100_000));
        assert_eq!(out.is_ok(), ok, "single={single}: {out:?}");
        if !ok {
            assert!(matches!(out, Err(CheckError::Violation(_))));
        }
    }
}

#[test]
fn counter_client_history_duplicate_reply_rejected() {
    let init = RslSpec::new(CounterApp::default());
    let both_one =
        [batch_op(vec![req(1, 1)], (0, 10), Some(vec![1])), batch_op(vec![req(2, 1)], (5, 15), Some(vec![1]))];
    assert!(matches!(check(&init, &both_one, &Budget::steps(100_000)), Err(CheckError::Violation(_))));
    // A timed-out increment explains a later jump.
    let jump = [batch_op(vec![req(1, 1)], (0, 0), None), batch_op(vec![req(2, 1)], (20, 30), Some(vec![2]))];
    assert!(check(&init, &jump, &Budget::steps(100_000)).is_ok());
}

/// Requests: `g<key>` = Get, `p<key>=<value>` = Put, `d<key>` = Delete; replies: `v<value>`,
/// `n` (absent) or `ok`.
struct TextCodec;

impl RequestCodec<BytesKvApp> for TextCodec {
    fn decode_request(bytes: &[u8]) -> Option<BytesKvOp> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            b'g' => Some(BytesKvOp::Get(rest.to_vec())),
            b'd' => Some(BytesKvOp::Delete(rest.to_vec())),
            b'p' => {
                let eq = rest.iter().position(|&b| b == b'=')?;
                Some(BytesKvOp::Put(rest[..eq].to_vec(), rest[eq + 1..].to_vec()))
            }
            _ => None,
        }
    }

    fn encode_reply(ret: &BytesKvRet) -> Vec<u8> {
        match ret {
            BytesKvRet::Value(Some(v)) => [b"v".as_slice(), v].concat(),
            BytesKvRet::Value(None) => b"n".to_vec(),
            BytesKvRet::Ok => b"ok".to_vec(),
        }
    }
}

#[test]
fn bytes_kv_hosted_on_rsl() {
    let mut spec = RslSpec::new(EncodedApp::<BytesKvApp, TextCodec>::new(BytesKvApp::default()));
    let batch: Vec<AppRequest> = [&b"ga"[..], b"pa=1", b"ga", b"da", b"ga", b"??"]
        .iter()
        .enumerate()
        .map(|(i, r)| AppRequest { client: 7, seqno: i as u64, request: r.to_vec() })
        .collect();
    let replies: Vec<Vec<u8>> = spec.step(&batch).into_iter().map(|r| r.reply).collect();
    assert_eq!(replies, vec![b"n".to_vec(), b"ok".to_vec(), b"v1".to_vec(), b"ok".to_vec(), b"n".to_vec(), vec![]]);
    assert!(spec.app.spec.map.is_empty());
}
