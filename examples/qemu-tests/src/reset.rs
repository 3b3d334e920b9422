//! A power-fail-safe restart on the emulated MCU: three durable replicas persist to flash
//! regions (RAM outside the linker's map, `memory.x` `STORAGE`), the MCU resets itself
//! (SYSRESETREQ) while a request is in flight, and after the reset every replica recovers
//! from its region and the counter goes on from the last acknowledged value.
//!
//! The boot before the reset and the one after share a control block in the same region:
//! a marker, the phase, the last acknowledged value and the tally of the tests before it.

use fleet_engine::rsl::durable::DURABLE_RECORD_OVERHEAD_BYTES;
use fleet_engine::rsl::Client;
use fleet_flash::{FlashLog, RslFlash, FRAME_BYTES};

use crate::check;
use crate::sim::{eps, Flash, Sim, D, FLASH_PAGE};
use crate::TestResult;

const STORAGE_START: usize = 0x203C_0000;
/// The control block's page, then one region per replica.
const REGION_BYTES: usize = 16 * FLASH_PAGE;
const MARKER: u32 = 0xF1EE_7E57;
/// An image every 512 bytes of log: images and pops happen before the reset.
const COMPACT_AFTER_BYTES: u64 = 512;
const RECORD_BYTES: usize = D + DURABLE_RECORD_OVERHEAD_BYTES + FRAME_BYTES;
const INCREMENTS_BEFORE: u64 = 12;
const INCREMENTS_AFTER: u64 = 5;

/// What the boot before the reset leaves for the boot after it.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Control {
    marker: u32,
    /// 1: the reset was asked for; the boot after it runs `after_reset`.
    pub phase: u32,
    /// The last counter value acknowledged before the reset.
    acked: u64,
    /// Tests passed and failed before the reset.
    pub passed: u32,
    pub failed: u32,
}

fn control_ptr() -> *mut Control {
    STORAGE_START as *mut Control
}

/// The control block, if the boot before this one left one.
pub fn control() -> Option<Control> {
    // SAFETY: the STORAGE region is outside every section; only this module touches it.
    let c = unsafe { control_ptr().read_volatile() };
    (c.marker == MARKER).then_some(c)
}

fn set_control(c: Option<Control>) {
    let c = c.unwrap_or(Control { marker: 0, phase: 0, acked: 0, passed: 0, failed: 0 });
    // SAFETY: as above.
    unsafe { control_ptr().write_volatile(c) }
}

/// The three persisters over their regions; `erase` first at the boot before the reset
/// (RAM holds noise, not an erased flash, at power-up).
fn persisters(erase: bool) -> Result<[RslFlash<'static, Flash>; 3], &'static str> {
    let bufs = cortex_m::singleton!(: [[u8; RECORD_BYTES]; 3] = [[0; RECORD_BYTES]; 3]).ok_or("buffers taken")?;
    let scratch = cortex_m::singleton!(: [[u8; 64]; 3] = [[0; 64]; 3]).ok_or("scratch taken")?;
    let [b0, b1, b2] = bufs;
    let [s0, s1, s2] = scratch;
    let open = |i: usize, buf: &'static mut [u8; RECORD_BYTES], scratch: &'static mut [u8; 64]| {
        let start = STORAGE_START + FLASH_PAGE + i * REGION_BYTES;
        // SAFETY: three disjoint regions after the control page, inside STORAGE, each
        // handed out once (this function runs once per boot).
        let region = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, REGION_BYTES) };
        if erase {
            region.fill(0xFF);
        }
        let log = embassy_futures::block_on(FlashLog::open(Flash::new(region), 0..REGION_BYTES as u32, buf))
            .map_err(|_| "a flash log does not open")?;
        Ok::<_, &'static str>(RslFlash::new(log, buf, scratch, COMPACT_AFTER_BYTES))
    };
    Ok([open(0, b0, s0)?, open(1, b1, s1)?, open(2, b2, s2)?])
}

/// Before the reset: a new durable cluster serves some increments, one more is left in
/// flight, and the MCU resets. Returns only on failure.
pub fn before_reset(passed: u32, failed: u32) -> TestResult {
    let mut sim = Sim::durable(persisters(true)?)?;
    sim.increments(INCREMENTS_BEFORE, 3000)?;
    let acked = sim.last_reply.ok_or("no reply before the reset")?;
    check!(acked == INCREMENTS_BEFORE, "the counter before the reset");
    check!(sim.submit(), "client refused the request");
    // Mid-load: the request is in flight (a few milliseconds, not committed for sure).
    sim.run_until(3, |_| false);
    set_control(Some(Control { marker: MARKER, phase: 1, acked, passed, failed }));
    cortex_m::peripheral::SCB::sys_reset()
}

/// After the reset: recover every replica from its region, then serve on.
pub fn after_reset(c: Control) -> TestResult {
    // A second reset (or a failure here) must not bring this boot back.
    set_control(None);
    let mut sim = Sim::durable(persisters(false)?)?;
    // A new client: the recovered reply cache remembers the old one's sequence numbers.
    sim.client = Client::new(&eps(), 1_000_000, 50, D).map_err(|_| "client")?;
    check!(sim.submit(), "client refused the request");
    check!(sim.run_until(3000, |s| s.client.pending().is_none()), "no reply after the reset");
    let first = sim.last_reply.ok_or("no reply after the reset")?;
    // The request in flight at the reset may have executed, once at most; nothing
    // acknowledged is lost.
    check!(first == c.acked + 1 || first == c.acked + 2, "after the reset the counter did not go on");
    sim.increments(INCREMENTS_AFTER, 3000)
}
