//! The blocking client's pipelined session (`RslClient::call_group`) against three
//! in-process replicas: more requests than one datagram holds run in order, each once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fleet_cli::procs::free_udp_ports;
use fleet_engine::rsl::apps::kv::{KvOp, KvReply};
use fleet_engine::wire::Bytes;
use fleet_io_std::rsl::{spawn_rsl, RslClient};
use fleet_io_std::ClusterFile;

fn op(kv: KvOp<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 512];
    let n = kv.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn a_group_call_runs_every_request_in_order_across_several_datagrams() {
    let ports = free_udp_ports(3).unwrap();
    let mut file = ClusterFile::local(3, 0);
    file.kv = None;
    file.rsl.as_mut().unwrap().replicas = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let setup = file.rsl().unwrap();
    let servers: Vec<_> = (0..3).map(|id| spawn_rsl(&setup, id, None).unwrap()).collect();
    let mut client = RslClient::connect(&setup).unwrap();
    // 150 requests of ~110 bytes: several groups, each as large as one datagram allows.
    let values: Vec<Vec<u8>> = (0..50).map(|i| format!("{i:0>100}").into_bytes()).collect();
    let mut requests = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let key = [b'k', (i % 7) as u8];
        requests.push(op(KvOp::Put(Bytes(&key), Bytes(v))));
        requests.push(op(KvOp::Get(Bytes(&key))));
        requests.push(op(KvOp::Delete(Bytes(b"gone"))));
    }
    let refs: Vec<&[u8]> = requests.iter().map(Vec::as_slice).collect();
    let replies = client.call_group(&refs, Duration::from_secs(10)).unwrap();
    drop(servers);
    assert_eq!(replies.len(), refs.len());
    for (i, v) in values.iter().enumerate() {
        let read = replies[3 * i + 1].as_deref().map(|r| KvReply::decode(r).unwrap());
        match read {
            // Each Get reads the Put just before it: the group ran in order.
            Some(KvReply::Value(Some(got))) => assert_eq!(got.0, &v[..], "request {}", 3 * i + 1),
            // Applied without room for its reply in its group's: allowed, but not all.
            None => {}
            other => panic!("request {}: {other:?}", 3 * i + 1),
        }
        assert_eq!(replies[3 * i].as_deref().map(KvReply::decode), Some(Some(KvReply::Done)), "put {i}");
    }
    let answered_reads = (0..50).filter(|i| replies[3 * i + 1].is_some()).count();
    assert!(answered_reads >= 25, "most reads fit their group's reply: {answered_reads} of 50");
}
