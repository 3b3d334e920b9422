//! An IronRSL replica of **your application** as firmware for the NUCLEO-F429ZI board.
//!
//! The application is `fleet_example_total::Total` (`examples/total-app`), the same type
//! `io-std/examples/replicated_total.rs` replicates on servers: replace it with your own
//! `App` and keep the rest. fleet-engine's `Replica` is bound to embassy-net by
//! `fleet-io-embassy`, on the embassy executor, with embassy-stm32's time driver and its
//! Ethernet driver (the STM32F429ZI's MAC and the board's LAN8742A PHY over RMII).
//!
//! One of a 3-member cluster, every member on UDP port 7000; the members' addresses and this
//! node's index are chosen at build time (`FLEET_MEMBERS`, default 10.0.0.1-3, a /24 with
//! no gateway; `FLEET_NODE=0|1|2`, default 0). Logs go through defmt over RTT (the on-board
//! ST-LINK, `probe-rs`).
//!
//! Durable: the replica's records go to four 16 KiB sectors of the chip's own flash
//! (`storage.rs`, bank 2) through `fleet-flash` before any datagram that depends on them
//! leaves; after a reset or a power cut it recovers from them and takes part again. Only an
//! empty region (a new board, or one erased) makes it rejoin.
//!
//! Sealed: every datagram carries a MAC under the cluster's keys (`fleet_engine::auth`),
//! compiled in from `FLEET_KEYS_DIR` at build time (see `build.rs`). A product would keep
//! them in a protected flash page or a secure element instead of the image.
//!
//! Every buffer is static and sized below; `docs/embedded.md` lists them with the measured
//! flash and RAM.
#![no_std]
#![no_main]

mod storage;

use defmt_rtt as _;
use panic_probe as _;

use core::mem::MaybeUninit;
use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::Spawner;
use embassy_futures::block_on;
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::flash::Flash;
use embassy_stm32::gpio::{Level, OutputOpenDrain, Pull, Speed};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::{bind_interrupts, eth, flash, rng};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_time::Timer;
use fleet_engine::auth::{Guard, Key, KeySet, Keyring, Role, AUTH_OVERHEAD_BYTES};
use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::{Recovery, Replica, RslConfig};
use fleet_engine::Endpoint;
use fleet_example_total::{Total, TOTAL_BYTES};
use fleet_flash::{FlashLog, Halt, Kind, RslFlash, FRAME_BYTES};
use fleet_io_embassy::{Buffers, Node, SocketBuffers};
use static_cell::{ConstStaticCell, StaticCell};

use storage::{F4Storage, STORAGE_BYTES};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
    FLASH => flash::InterruptHandler;
});

/// Members of the cluster (the replica capacity `R`).
const MEMBERS: usize = 3;
/// This node's index, from `FLEET_NODE` at build time.
const ME: usize = match option_env!("FLEET_NODE") {
    Some(s) => (s.as_bytes()[0] - b'0') as usize,
    None => 0,
};
const _: () = assert!(ME < MEMBERS, "FLEET_NODE must be 0, 1 or 2");
include!(concat!(env!("OUT_DIR"), "/members.rs"));
/// The UDP port every member listens on.
const RSL_PORT: u16 = 7000;

/// Log window `W` (and `max_log_length`): batches in flight past the truncation point.
/// Bounded by the flash region, not RAM: the acceptor's image (up to `W` votes of `D`
/// bytes) is written at every compaction, and two images and the log between them must fit
/// in three of the region's four 16 KiB sectors.
const W: usize = 4;
/// Datagram bound `D`: the 1500-byte-MTU UDP payload.
const D: usize = 1472;
/// Request-queue bytes `QB` at the leader: 8 KiB, some four hundred 8-byte requests with
/// their headers (the QEMU firmware's 2.5 KiB was set by a 64 KiB RAM budget).
const QB: usize = 8192;
/// Reply-cache clients `C` (also the election's per-epoch request tracking): 32 clients.
const C: usize = 32;
/// Reply bytes `RB`: a total.
const RB: usize = TOTAL_BYTES;
/// Retained executed batches `TB`: two full batches and change, so a peer a batch or two
/// behind catches up without a snapshot.
const TB: usize = 4096;

type FwReplica = Replica<Total, MEMBERS, W, D, QB, C, RB, TB>;
type FwRecovery = Recovery<Total, MEMBERS, W, D, QB, C, RB, TB>;
type FwNode = Node<NoopRawMutex, FwReplica>;
type FwDevice = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// An image every 16 KiB of log: an image here is at most ~8 KiB (four votes of `D` bytes,
/// the reply cache, an 8-byte total), so the latest complete image, 16 KiB of log, the
/// image being written and a record of slack at each sector's end fit in 48 KiB, three
/// sectors; the fourth is the one the queue erases next.
const COMPACT_AFTER_BYTES: u64 = 16 * 1024;
/// One durable record and its frame.
const RECORD_BYTES: usize = D + DURABLE_RECORD_OVERHEAD_BYTES + FRAME_BYTES;
/// One snapshot piece: at least the largest reply-cache entry.
const SCRATCH_BYTES: usize = 256;
/// One step's outbox (32 datagrams, 12 KiB: a full 2a or 2b broadcast is 4.4 KiB), the
/// receive buffer, a 6 KiB loopback FIFO (self-addressed datagrams: a full 2a and 2b, twice).
type FwBuffers = Buffers<32, 12288, D, 6144>;
/// The UDP socket: 16 packets and 8 KiB each way (five full-size datagrams and change),
/// which also holds what arrives while a flash sector is being erased.
type FwSocket = SocketBuffers<16, 8192>;
/// Ethernet DMA descriptors and frame buffers: 4 to send, 8 to receive (18 KiB), in SRAM
/// (the CCM RAM at 0x1000_0000 is not reachable by DMA).
type FwPackets = PacketQueue<4, 8>;

// `ConstStaticCell`s, built at compile time in place: a `StaticCell` is filled through a
// copy on the stack, which the recovery's stack (see `recover`) cannot spare. The socket's
// `PacketMetadata::EMPTY` is not all zeroes, so the socket goes in `.data` (17 KiB of flash
// copied at boot; 2 MiB of flash can spare it).
static PACKETS: ConstStaticCell<FwPackets> = ConstStaticCell::new(PacketQueue::new());
static RESOURCES: ConstStaticCell<StackResources<2>> = ConstStaticCell::new(StackResources::new());
static SOCKET: ConstStaticCell<FwSocket> = ConstStaticCell::new(SocketBuffers::new());
/// The run loop's buffers and the node (the replica), in the core-coupled RAM: neither is
/// touched by DMA, and SRAM is left to the stack. `.ccmram` is NOLOAD (`memory.x`): the
/// runtime neither zeroes nor copies it, so `ccm_statics` writes both before use.
#[link_section = ".ccmram.BUFFERS"]
static mut BUFFERS: MaybeUninit<FwBuffers> = MaybeUninit::uninit();
#[link_section = ".ccmram.NODE"]
static mut NODE: MaybeUninit<FwNode> = MaybeUninit::uninit();
/// Set once `ccm_statics` has handed the two out.
static CCM_TAKEN: AtomicBool = AtomicBool::new(false);
static MEMBER_EPS: StaticCell<[Endpoint; MEMBERS]> = StaticCell::new();
static RECORD: ConstStaticCell<[u8; RECORD_BYTES]> = ConstStaticCell::new([0; RECORD_BYTES]);
static SCRATCH: ConstStaticCell<[u8; SCRATCH_BYTES]> = ConstStaticCell::new([0; SCRATCH_BYTES]);

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());

    // Errata sheet ES0206, 2.2.11: on F42x/F43x silicon before revision 3, reads of flash
    // bank 2 (the storage) can be corrupted while PA12 is in use; embassy-stm32 refuses them
    // unless PA12 is an output held low with its pull-down, the workaround. PA12 is the user
    // USB connector's D+, unused here.
    core::mem::forget(OutputOpenDrain::new_pull(p.PA12, Level::Low, Speed::Low, Pull::Down));

    let mut rng = Rng::new(p.RNG, Irqs);
    let mac = mac_address();
    let packets = PACKETS.take();
    // NUCLEO-F429ZI RMII wiring (UM1974): REF_CLK PA1 (50 MHz from the PHY), CRS_DV PA7,
    // RXD0 PC4, RXD1 PC5, TXD0 PG13, TXD1 PB13, TX_EN PG11; SMI: MDIO PA2, MDC PC1. The
    // LAN8742A (SMI address 0) is found by probing.
    let (ref_clk, crs_dv, rxd0, rxd1, txd0, txd1, tx_en) = (p.PA1, p.PA7, p.PC4, p.PC5, p.PG13, p.PB13, p.PG11);
    let device: FwDevice = Ethernet::new(
        packets, p.ETH, Irqs, ref_clk, crs_dv, rxd0, rxd1, txd0, txd1, tx_en, mac, p.ETH_SMA, p.PA2, p.PC1,
    );
    let ip = ADDRS[ME];
    let net = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(ip[0], ip[1], ip[2], ip[3]), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    let (stack, runner) = embassy_net::new(device, net, RESOURCES.take(), rng.next_u64());
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

    let region = F4Storage::new(Flash::new(p.FLASH, Irqs).into_regions().bank2_region1);
    let record = RECORD.take();
    let mut log = match block_on(FlashLog::open(region, 0..STORAGE_BYTES, record)) {
        Ok(log) => log,
        Err(e) => defmt::panic!("the flash log does not open: {}", Halt::from(e).0),
    };
    let found = log.found();
    // The hardware RNG gives this incarnation's nonce for the rejoin rule (used only when
    // the flash holds nothing).
    let nonce = rng.next_u64().max(1);
    let (buffers, node_slot) = ccm_statics();
    let node = recover(&mut log, record, config, nonce, eps[ME], node_slot);
    defmt::info!("recovered from flash: {} log and {} image records", found.log_records, found.image_records);
    let mut persister = RslFlash::new(log, record, SCRATCH.take(), COMPACT_AFTER_BYTES);
    let Ok(socket) = SOCKET.take().bind(stack, RSL_PORT) else { defmt::panic!("bind") };
    match status_task(node) {
        Ok(t) => spawner.spawn(t),
        Err(_) => defmt::panic!("status task"),
    }
    defmt::info!("fleet replica {} of {} at {}:{}", ME, MEMBERS, ip, RSL_PORT);
    let members = MEMBER_EPS.init(eps);
    // Its membership never changes here: no room for members named later.
    let mut guard = Guard::fixed_membership(keys, members[ME], Role::Member(members));
    node.run_sealed(&socket, buffers, &mut persister, &mut guard).await
}

/// 168 MHz from the ST-LINK's 8 MHz clock (HSE bypass): 8 / 4 × 168 / 2. The PLL's Q output
/// is 48 MHz, the RNG's clock. Ethernet needs an AHB clock of at least 25 MHz.
fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    use embassy_stm32::time::Hertz;
    let mut config = embassy_stm32::Config::default();
    config.rcc.hse = Some(Hse { freq: Hertz(8_000_000), mode: HseMode::Bypass });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config.rcc.mux.clk48sel = mux::Clk48sel::PLL1_Q;
    config
}

/// A locally administered unicast MAC address from the chip's 96-bit unique ID, so that
/// boards on one segment differ without configuration.
fn mac_address() -> [u8; 6] {
    let uid = embassy_stm32::uid::uid();
    // FNV-1a over the ID: its bytes are lot, wafer and position, not uniformly spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_le_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
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

/// The node, its replica rebuilt from the flash log (a rejoining one, with nothing
/// stored), written into `NODE`.
///
/// `RslFlash::recover` does the same, but hands the replica back through an async fn's
/// future, and each by-value move of a 43 KiB replica on that path (the recovery, the
/// future, its result, the node) is a copy on the stack: 178 KiB of stack, on a 192 KiB
/// part. Here each step has its own frame: the recovery is built, the log replayed into it
/// by reference, and `finish_into` writes the replica it yields straight into the node's
/// slot. This frame holds the recovery and the copy `finish_into` consumes (85 KiB), and the
/// deepest call below it 23 KiB; `docs/embedded.md` has the measured frames.
#[inline(never)]
fn recover(
    log: &mut FlashLog<F4Storage>,
    buf: &mut [u8],
    config: RslConfig<MEMBERS>,
    nonce: u64,
    me: Endpoint,
    slot: &'static mut MaybeUninit<FwNode>,
) -> &'static FwNode {
    let mut recovery = new_recovery(config);
    replay_into(&mut recovery, log, buf);
    finish_into(recovery, nonce, me, slot)
}

/// A recovery of replica `ME` at its initial state (its own frame, so that the engine's
/// temporaries are gone before the replay).
#[inline(never)]
fn new_recovery(config: RslConfig<MEMBERS>) -> FwRecovery {
    match FwRecovery::new(config, ME, Total::new(), fleet_io_embassy::now()) {
        Ok(r) => r,
        Err(e) => defmt::panic!("the configuration does not make a replica: {}", e),
    }
}

/// The flash log's records, replayed into `recovery`.
#[inline(never)]
fn replay_into(recovery: &mut FwRecovery, log: &mut FlashLog<F4Storage>, buf: &mut [u8]) {
    let replayed = block_on(log.replay(buf, |kind, bytes| match kind {
        Kind::Image => recovery.snapshot_piece(bytes),
        Kind::Log => recovery.log_record(bytes),
    }));
    match replayed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => defmt::panic!("the flash log does not rebuild the replica: {}", e),
        Err(e) => defmt::panic!("the flash log is unreadable: {}", Halt::from(e).0),
    }
}

/// The recovered replica, as the node in `slot`.
#[inline(never)]
fn finish_into(
    recovery: FwRecovery,
    nonce: u64,
    me: Endpoint,
    slot: &'static mut MaybeUninit<FwNode>,
) -> &'static FwNode {
    match recovery.finish(nonce) {
        Ok(replica) => slot.write(Node::new(me, replica)),
        Err(e) => defmt::panic!("the flash log does not rebuild the replica: {}", e),
    }
}

/// The run loop's buffers, written, and the node's slot in the CCM RAM; once (a second call
/// panics). Not inlined: building the buffers may go through a copy on the stack, which
/// must be gone before the recovery needs the stack.
#[inline(never)]
fn ccm_statics() -> (&'static mut FwBuffers, &'static mut MaybeUninit<FwNode>) {
    if CCM_TAKEN.swap(true, Ordering::AcqRel) {
        defmt::panic!("the CCM statics are taken once");
    }
    // SAFETY: the flag above makes this the only reference to either static, ever; both
    // are `MaybeUninit`, valid whatever the RAM holds, and the buffers are written before
    // they are handed out.
    let (buffers, node) = unsafe { (&mut *addr_of_mut!(BUFFERS), &mut *addr_of_mut!(NODE)) };
    (buffers.write(Buffers::new()), node)
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, FwDevice>) -> ! {
    runner.run().await
}

/// Logs the replica's position, the total and the binding's counters every 5 seconds.
#[embassy_executor::task]
async fn status_task(node: &'static FwNode) -> ! {
    loop {
        Timer::after_secs(5).await;
        let (status, total, link, halted) = node.with(|n| (n.host.status(), n.host.app().value(), n.link, n.halted));
        match halted {
            None => defmt::info!("{} total {} {}", status, total, link),
            Some(why) => defmt::error!("halted: {}", why.0),
        }
    }
}
