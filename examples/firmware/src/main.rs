//! An IronRSL replica as Cortex-M4F firmware.
//!
//! fleet-engine's `Replica` bound to embassy-net by `fleet-io-embassy`, on the embassy
//! executor, with a SysTick time driver and a LAN9118 Ethernet driver (the Arm MPS2 board,
//! emulated by QEMU as `mps2-an386`). One of a 3-member cluster at 10.0.0.1-3:7000; which
//! one is chosen at build time: `FLEET_NODE=1 cargo build --release` (default 0).
//! Logs go through defmt over RTT.
//!
//! Durable: the replica's records go to a flash region through `fleet-flash` before any
//! datagram that depends on them leaves, and after a reset it recovers from them and
//! rejoins. The MPS2 board has no flash controller, so the region is RAM outside the
//! linker's map (`memory.x`, `STORAGE`), which a warm reset leaves alone; on a board with
//! flash, `RamFlash` gives way to the HAL's `NorFlash` driver.
//!
//! Sealed: every datagram carries a MAC under the cluster's keys (`fleet_engine::auth`),
//! compiled in from `FLEET_KEYS_DIR` at build time (see `build.rs`). A real board would
//! keep them in a protected flash page or a secure element instead of the image.
//!
//! Every buffer is static and sized below; `docs/embedded.md` lists them with the measured
//! flash and RAM.
#![no_std]
#![no_main]

mod lan9118;
mod systick;

use defmt_rtt as _;
use panic_probe as _;

use embassy_executor::Spawner;
use embassy_futures::block_on;
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::Timer;
use fleet_engine::auth::{Guard, Key, KeySet, Keyring, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::rsl::apps::kv::KvApp;
use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{Replica, RslConfig};
use fleet_engine::Endpoint;
use fleet_flash::{FlashLog, Halt, RamFlash, RecoverFailure, RslFlash, FRAME_BYTES};
use fleet_io_embassy::{Buffers, Node, SocketBuffers};
use static_cell::{ConstStaticCell, StaticCell};

use lan9118::Lan9118;

/// Members of the cluster (the replica capacity `R`).
const MEMBERS: usize = 3;
/// This node's index, from `FLEET_NODE` at build time.
const ME: usize = match option_env!("FLEET_NODE") {
    Some(s) => (s.as_bytes()[0] - b'0') as usize,
    None => 0,
};
const _: () = assert!(ME < MEMBERS, "FLEET_NODE must be 0, 1 or 2");
/// Member addresses; every member listens on `RSL_PORT`.
const ADDRS: [[u8; 4]; MEMBERS] = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
const RSL_PORT: u16 = 7000;

/// Log window `W` (and `max_log_length`): operations in flight past the truncation point.
const W: usize = 4;
/// Datagram bound `D`: the 1500-byte-MTU UDP payload.
const D: usize = 1472;
/// Request-queue bytes `QB` at the leader: 2,240 B, some nineteen small requests (down
/// from 4 KiB to make room for the rejoin state, then for the queries waiting for their
/// confirmation round, then for the membership epoch state, then for the reply cache's
/// clients in order, within the 64 KiB RAM budget).
const QB: usize = 2240;
/// Retained executed batches `TB`: one full batch. A peer further behind catches up from
/// this replica's snapshot (or from a server replica's larger tail).
const TB: usize = 1536;

/// The replicated map and the client-facing capacities.
#[cfg(not(feature = "io-std-compatible"))]
mod caps {
    /// 16 pairs, keys ≤ 16 bytes, values ≤ 64 bytes.
    pub type App = fleet_engine::rsl::apps::kv::KvApp<16, 16, 64>;
    /// Reply-cache clients `C`.
    pub const C: usize = 8;
    /// Reply bytes `RB` (a Get of a 64-byte value encodes to 67).
    pub const RB: usize = 80;
}

/// io-std's map (`StdKvApp<64, 1024>` with `max_keys = 8`) and reply size.
#[cfg(feature = "io-std-compatible")]
mod caps {
    /// 8 pairs, keys ≤ 64 bytes, values ≤ 1024 bytes.
    pub type App = fleet_engine::rsl::apps::kv::KvApp<8, 64, 1024>;
    /// Reply-cache clients `C`.
    pub const C: usize = 4;
    /// Reply bytes `RB`, as io-std's servers.
    pub const RB: usize = 1100;
}

type FwReplica = Replica<caps::App, MEMBERS, W, D, QB, { caps::C }, { caps::RB }, TB>;

/// The flash region's erase page (a typical MCU flash sector size).
const FLASH_PAGE: usize = 4096;
/// The region's first page holds a marker that tells a warm reset (the region holds a log)
/// from a power-up (RAM noise, to be erased); the log uses the rest.
const STORAGE_START: usize = 0x203C_0000;
const STORAGE_BYTES: usize = 256 * 1024;
const FLASH_BYTES: usize = STORAGE_BYTES - FLASH_PAGE;
const STORAGE_MARKER: [u8; 16] = *b"fleet-flash-v1\0\0";
/// An image (snapshot and acceptor image, at most ~8 KiB here) every 32 KiB of log: the
/// region holds two images and that log with room to spare for page ends.
const COMPACT_AFTER_BYTES: u64 = 32 * 1024;
/// One durable record and its frame.
const RECORD_BYTES: usize = D + DURABLE_RECORD_OVERHEAD_BYTES + FRAME_BYTES;
/// One snapshot piece: at least the largest reply-cache entry.
const SCRATCH_BYTES: usize = if caps::RB > 256 { caps::RB } else { 256 };
type FwFlash = RamFlash<'static, FLASH_PAGE>;
type FwNode = Node<NoopRawMutex, FwReplica>;
/// One step's outbox (24 datagrams, 7 KiB: a full 2a or 2b broadcast is 4.4 KiB), the receive
/// buffer, a 3 KiB loopback FIFO (a full self-addressed 2a and 2b). 1 KiB less each than
/// before flash: room for the durable record buffer within 64 KiB of RAM.
type FwBuffers = Buffers<24, 7168, D, 3072>;
/// The UDP socket: 8 packets and 4 KiB each way (two full-size datagrams and change).
type FwSocket = SocketBuffers<8, 3840>;

static RESOURCES: ConstStaticCell<StackResources<2>> = ConstStaticCell::new(StackResources::new());
// Not a `ConstStaticCell`: `PacketMetadata::EMPTY` is not all zeroes, which would put the
// whole 8 KiB in `.data` (copied from flash at boot) instead of `.bss`.
static SOCKET: StaticCell<FwSocket> = StaticCell::new();
static BUFFERS: ConstStaticCell<FwBuffers> = ConstStaticCell::new(Buffers::new());
static NODE: StaticCell<FwNode> = StaticCell::new();
static MEMBER_EPS: StaticCell<[Endpoint; MEMBERS]> = StaticCell::new();
static RECORD: ConstStaticCell<[u8; RECORD_BYTES]> = ConstStaticCell::new([0; RECORD_BYTES]);
static SCRATCH: ConstStaticCell<[u8; SCRATCH_BYTES]> = ConstStaticCell::new([0; SCRATCH_BYTES]);

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let Some(p) = cortex_m::Peripherals::take() else { defmt::panic!("peripherals taken twice") };
    systick::start(p.SYST);

    let mac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01 + ME as u8];
    // SAFETY: 0x4020_0000 is the MPS2 Ethernet controller and nothing else touches it.
    let dev = match unsafe { Lan9118::new(0x4020_0000, mac) } {
        Ok(d) => d,
        Err(e) => defmt::panic!("ethernet: {}", e),
    };
    let ip = ADDRS[ME];
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(ip[0], ip[1], ip[2], ip[3]), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let (stack, runner) = embassy_net::new(dev, net, RESOURCES.take(), 0x5eed_0000 + ME as u64);
    match net_task(runner) {
        Ok(t) => spawner.spawn(t),
        Err(_) => defmt::panic!("net task"),
    }

    let eps = ADDRS.map(|a| Endpoint::v4(a, RSL_PORT));
    let Ok(mut config) = RslConfig::<MEMBERS>::new(&eps) else { defmt::panic!("members") };
    config.params.max_log_length = W as u64;
    // The wire bound is `D`; the engine's leaves room for the seal.
    config.params.max_datagram_bytes = D - AUTH_OVERHEAD_BYTES;
    let keys = keyring(config.identity());
    let record = RECORD.take();
    let log = match block_on(FlashLog::open(FwFlash::new(storage()), 0..FLASH_BYTES as u32, record)) {
        Ok(log) => log,
        Err(e) => defmt::panic!("the flash log does not open: {}", Halt::from(e).0),
    };
    let found = log.found();
    let mut persister = RslFlash::new(log, record, SCRATCH.take(), COMPACT_AFTER_BYTES);
    // Recovered on the stack (through `block_on`), not inside this task's future, which
    // lives in static RAM: a replica there would cost its size twice.
    let node: &'static FwNode = NODE.init_with(|| Node::new(eps[ME], recover(&mut persister, config)));
    defmt::info!("recovered from flash: {} log and {} image records", found.log_records, found.image_records);
    let Ok(socket) = SOCKET.init_with(SocketBuffers::new).bind(stack, RSL_PORT) else { defmt::panic!("bind") };
    match status_task(node) {
        Ok(t) => spawner.spawn(t),
        Err(_) => defmt::panic!("status task"),
    }
    defmt::info!("fleet replica {} of {} at {}", ME, MEMBERS, eps[ME].port);
    let members = MEMBER_EPS.init(eps);
    // Its membership never changes here: no room for members named later.
    let mut guard = Guard::fixed_membership(keys, members[ME], Role::Member(members));
    node.run_sealed(&socket, BUFFERS.take(), &mut persister, &mut guard).await
}

include!(concat!(env!("OUT_DIR"), "/keys.rs"));

/// The cluster's keyring from the keys compiled in.
fn keyring(cluster: u32) -> Keyring {
    fn set(keys: &[(u8, [u8; 16])]) -> KeySet {
        match keys {
            [(id, k)] => KeySet::single(Key::new(*id, *k)),
            [(a, ka), (b, kb)] => match KeySet::rotating(Key::new(*a, *ka), Key::new(*b, *kb)) {
                Ok(set) => set,
                Err(_) => defmt::panic!("the two keys of a rotation need two ids"),
            },
            _ => defmt::panic!("one key, or two during a rotation"),
        }
    }
    Keyring { cluster, member: Some(set(MEMBER_KEYS)), client: set(CLIENT_KEYS) }
}

/// The replica rebuilt from the flash log (a rejoining one, with nothing stored).
#[inline(never)]
fn recover(persister: &mut RslFlash<'static, FwFlash>, config: RslConfig<MEMBERS>) -> FwReplica {
    let now = fleet_io_embassy::now();
    match block_on(persister.recover(config, ME, KvApp::new(), now, boot_nonce())) {
        Ok(r) => r,
        Err(RecoverFailure::Flash(e)) => defmt::panic!("the flash log is unreadable: {}", Halt::from(e).0),
        Err(RecoverFailure::Records(e)) => defmt::panic!("the flash log does not rebuild the replica: {}", e),
    }
}

/// The flash region (see `memory.x`). Erased at a power-up, kept across a warm reset.
fn storage() -> &'static mut [u8] {
    // SAFETY: `STORAGE` is outside every linker section and nothing else touches it; this
    // runs once, before any task.
    let region = unsafe { core::slice::from_raw_parts_mut(STORAGE_START as *mut u8, STORAGE_BYTES) };
    let (marker, flash) = region.split_at_mut(FLASH_PAGE);
    if marker[..16] != STORAGE_MARKER {
        flash.fill(0xFF);
        marker[..16].copy_from_slice(&STORAGE_MARKER);
        defmt::info!("flash region erased (power-up)");
    }
    flash
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

/// Logs the replica's position and the binding's counters every 5 seconds.
#[embassy_executor::task]
async fn status_task(node: &'static FwNode) -> ! {
    loop {
        Timer::after_secs(5).await;
        let (status, link) = node.with(|n| (n.host.status(), n.link));
        defmt::info!("{} {}", status, link);
    }
}

/// Boots since power-up, in RAM the runtime does not initialise: it survives a warm reset,
/// and holds noise after a power-up on real hardware.
#[link_section = ".uninit.FLEET_BOOTS"]
static mut BOOTS: core::mem::MaybeUninit<u64> = core::mem::MaybeUninit::uninit();

/// This incarnation's nonce for the rejoin rule (`Replica::new_rejoining`): the boot
/// counter above, mixed with the replica's index. A board with a hardware random number
/// generator should use it instead. (It only matters when the flash holds nothing.)
fn boot_nonce() -> u64 {
    let slot = core::ptr::addr_of_mut!(BOOTS).cast::<u64>();
    // SAFETY: read and written once, before any task runs; every bit pattern is a u64.
    let boots = unsafe { slot.read_volatile() }.wrapping_add(1);
    // SAFETY: as above.
    unsafe { slot.write_volatile(boots) };
    // splitmix64: neighbouring counters give unrelated nonces.
    let mut z = boots ^ ((ME as u64) << 56);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}
