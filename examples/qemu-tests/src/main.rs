//! fleet-engine's `no_std` tests on an emulated Cortex-M4F.
//!
//! Boot under QEMU (`mps2-an386`), run every test against the engine's public API, print one
//! line per test and `N passed, N failed` over semihosting, and exit with the status (so a
//! CI step fails when a test does). No heap, no unwinding: a panic is reported as a failure
//! of the running test, then the run ends.
//!
//! The last test spans a reset: durable replicas persist to flash regions, the MCU resets
//! itself mid-load, and the boot after the reset recovers them and finishes the run.
#![no_std]
#![no_main]

mod reset;
mod sim;
mod tests;

use core::sync::atomic::{AtomicUsize, Ordering};

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};

/// A test's outcome: `Err` names the broken expectation.
pub type TestResult = Result<(), &'static str>;

/// Fails the test with `msg` unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $msg:expr) => {
        if !$cond {
            return Err($msg);
        }
    };
}

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// The test that spans a reset; it runs after every test of `tests::ALL`.
const RESET_TEST: &str = "durable_replicas_recover_from_flash_after_a_reset";

#[entry]
fn main() -> ! {
    if let Some(c) = reset::control().filter(|c| c.phase == 1) {
        PASSED.store(c.passed as usize, Ordering::SeqCst);
        FAILED.store(c.failed as usize, Ordering::SeqCst);
        CURRENT.store(tests::ALL.len(), Ordering::SeqCst);
        hprintln!("(the MCU was reset; recovering from flash)");
        report(RESET_TEST, reset::after_reset(c));
        finish()
    }
    hprintln!("fleet-engine no_std tests on Cortex-M4F (QEMU mps2-an386): {} tests", tests::ALL.len() + 1);
    for (i, (name, test)) in tests::ALL.iter().enumerate() {
        CURRENT.store(i, Ordering::SeqCst);
        report(name, test());
    }
    CURRENT.store(tests::ALL.len(), Ordering::SeqCst);
    hprintln!("test {} ... resetting the MCU mid-load", RESET_TEST);
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    // Returns only if the cluster failed before the reset.
    report(RESET_TEST, reset::before_reset(passed as u32, failed as u32));
    finish()
}

fn report(name: &str, result: TestResult) {
    match result {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::SeqCst);
            hprintln!("test {} ... ok", name);
        }
        Err(why) => {
            FAILED.fetch_add(1, Ordering::SeqCst);
            hprintln!("test {} ... FAILED: {}", name, why);
        }
    }
}

fn finish() -> ! {
    let (passed, failed) = (PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    let not_run = (tests::ALL.len() + 1).saturating_sub(passed + failed);
    if not_run > 0 {
        hprintln!("{} not run", not_run);
    }
    hprintln!("{} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 && not_run == 0 { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Under QEMU a panic must end the emulator (panic-probe's `udf` would hang it): report the
/// running test as failed, print the tally, exit with failure.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let name = tests::ALL.get(CURRENT.load(Ordering::SeqCst)).map_or(RESET_TEST, |t| t.0);
    hprintln!("test {} ... PANICKED: {}", name, info);
    FAILED.fetch_add(1, Ordering::SeqCst);
    finish()
}

#[cortex_m_rt::exception]
unsafe fn HardFault(frame: &cortex_m_rt::ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
