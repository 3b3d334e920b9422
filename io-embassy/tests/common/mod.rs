//! Shared pieces of the host tests: a parking `block_on`, embassy-net stacks on an
//! in-memory switch, the replica and client types, and a KV-operation helper.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod bridge;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration as StdDuration;

use embassy_net::{Ipv4Address, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_time::Duration;
use fleet_engine::rsl::apps::kv::{KvApp, KvOp, KvReply};
use fleet_engine::rsl::{Client, Params, Replica, RslConfig};
use fleet_engine::wire::Bytes;
use fleet_engine::Endpoint;
use fleet_io_embassy::switch::{Port, Switch};
use fleet_io_embassy::{Buffers, RslClient, SocketBuffers};

/// Runs a future to completion on this thread, sleeping (not spinning) while it is pending:
/// embassy-time's std driver and the switch wake it.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(StdDuration::from_millis(50));
    }
}

/// Runs `f` on a thread with a large stack: engine values and switch queues are big and,
/// in debug builds, built on the stack before they are boxed.
pub fn with_big_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let t = std::thread::Builder::new().stack_size(64 << 20).spawn(f).unwrap();
    match t.join() {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// Ports per switch in the tests: 3 replicas, a client, an uplink.
pub const PORTS: usize = 5;
/// Receive queue per port.
pub const QUEUE: usize = 64;
pub type TestSwitch = Switch<PORTS, QUEUE>;
pub type TestPort = Port<'static, PORTS, QUEUE>;

/// The replicated application of the pure-embassy tests.
pub type TestApp = KvApp<32, 16, 64>;
/// A replica of the pure-embassy tests: 3 replicas, window 8, 1472-byte datagrams.
pub type TestReplica = Replica<TestApp, 3, 8, 1472, 8192, 16, 128>;
/// Run-loop buffers: 48 datagrams / 24 KiB per step, 1472-byte receive, 8 KiB loopback.
pub type TestBuffers = Buffers<48, 24576, 1472, 8192>;
/// Socket buffers: 16 packets, 24 KiB each way.
pub type TestSocket = SocketBuffers<16, 24576>;
pub type TestClient = RslClient<3, 1472, 4416>;

/// A fresh switch that lives for the whole test process.
pub fn switch(seed: u64) -> &'static TestSwitch {
    Box::leak(Box::new(TestSwitch::new(seed)))
}

/// An embassy-net stack with address `ip`/`prefix`, on a new port of `switch` (any size).
pub fn stack<const P: usize, const Q: usize>(
    switch: &'static Switch<P, Q>,
    ip: [u8; 4],
    prefix: u8,
) -> (Stack<'static>, embassy_net::Runner<'static, Port<'static, P, Q>>, fleet_io_embassy::switch::PortId) {
    stack_on(switch.attach(fleet_engine::IpAddr::V4(ip)).unwrap(), ip, prefix)
}

/// An embassy-net stack with address `ip`/`prefix` on `port`.
#[allow(dead_code)] // Not every test binary uses it directly.
pub fn stack_on<const P: usize, const Q: usize>(
    port: Port<'static, P, Q>,
    ip: [u8; 4],
    prefix: u8,
) -> (Stack<'static>, embassy_net::Runner<'static, Port<'static, P, Q>>, fleet_io_embassy::switch::PortId) {
    let id = port.id();
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::from(ip), prefix),
        gateway: None,
        dns_servers: Default::default(),
    });
    let resources = Box::leak(Box::new(StackResources::<4>::new()));
    let seed = u64::from(u32::from_be_bytes(ip));
    let (stack, runner) = embassy_net::new(port, config, resources, seed);
    (stack, runner, id)
}

/// Fast timers so that view changes take a fraction of a second.
pub fn fast_params() -> Params {
    Params {
        heartbeat_period_ms: 20,
        baseline_view_timeout_ms: 200,
        max_view_timeout_ms: 2000,
        retransmit_period_ms: 40,
        max_log_length: 7,
        max_datagram_bytes: 1472,
        ..Params::default()
    }
}

pub fn rsl_config<const R: usize>(eps: &[Endpoint], params: Params) -> RslConfig<R> {
    let mut c = RslConfig::new(eps).unwrap();
    c.params = params;
    c
}

pub fn client(eps: &[Endpoint], first_seqno: u64) -> Box<TestClient> {
    Box::new(RslClient::new(Client::new(eps, first_seqno, 100, 1472).unwrap()))
}

/// One KV operation through the async client (of any replica bound); panics on timeout.
pub async fn kv<const R: usize, const OB: usize>(
    c: &mut RslClient<R, 1472, OB>,
    socket: &embassy_net::udp::UdpSocket<'_>,
    op: KvOp<'_>,
) -> Result<Option<Vec<u8>>, fleet_io_embassy::CallError> {
    let mut req = [0u8; 256];
    let n = op.encode(&mut req).unwrap();
    let mut reply = [0u8; 256];
    let m = c.call(socket, &req[..n], &mut reply, Duration::from_secs(10)).await?;
    match KvReply::decode(&reply[..m]).expect("a KV reply") {
        KvReply::Value(v) => Ok(v.map(|b| b.0.to_vec())),
        KvReply::Done => Ok(None),
        KvReply::Error(e) => panic!("refused: {e:?}"),
    }
}

pub fn put<'a>(key: &'a [u8], value: &'a [u8]) -> KvOp<'a> {
    KvOp::Put(Bytes(key), Bytes(value))
}

pub fn get(key: &[u8]) -> KvOp<'_> {
    KvOp::Get(Bytes(key))
}
