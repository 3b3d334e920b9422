//! A minimal embassy-net driver for the SMSC LAN9118/LAN9220 Ethernet controller of the
//! Arm MPS2 boards (and QEMU's `mps2-an386` model): programmed I/O through its FIFOs.
//!
//! Receive is polled: when the RX status FIFO is empty the driver asks embassy-time to wake
//! the network task one tick (1 ms) later. Wiring the controller's interrupt (IRQ 13 on
//! MPS2) would remove that poll; the protocol does not need it (its timers are 10 ms+).

use core::ptr::{read_volatile, write_volatile};
use core::task::Context;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState, RxToken, TxToken};

/// Ethernet frame bound (1500-byte MTU plus the 14-byte header).
pub const FRAME: usize = 1514;

const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;
const MAC_CR: u32 = 1;
const ADDRH: u32 = 2;
const ADDRL: u32 = 3;
const CSR_BUSY: u32 = 1 << 31;

/// Why the controller could not be brought up.
#[derive(Debug, defmt::Format)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: no LAN9118 at that address.
    NotFound,
}

/// The controller's register block.
pub struct Regs {
    base: usize,
}

/// The controller with one receive and one transmit frame buffer.
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: [u8; FRAME],
    tx: [u8; FRAME],
}

impl Lan9118 {
    /// Resets and starts the controller at `base` with address `mac`.
    ///
    /// # Safety
    /// `base` must be the LAN9118 register block, used by nothing else.
    pub unsafe fn new(base: usize, mac: [u8; 6]) -> Result<Lan9118, InitError> {
        let regs = Regs { base };
        if regs.read(BYTE_TEST) != 0x8765_4321 {
            return Err(InitError::NotFound);
        }
        regs.write(HW_CFG, 1); // soft reset
        while regs.read(HW_CFG) & 1 != 0 {}
        regs.mac_write(ADDRL, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        regs.mac_write(ADDRH, u32::from(u16::from_le_bytes([mac[4], mac[5]])));
        regs.mac_write(MAC_CR, (1 << 3) | (1 << 2)); // TXEN | RXEN
        regs.write(TX_CFG, 1 << 1); // TX_ON
        Ok(Lan9118 { regs, mac, rx: [0; FRAME], tx: [0; FRAME] })
    }
}

impl Regs {
    fn read(&self, off: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract: `base` is the controller's register block.
        unsafe { read_volatile((self.base + off) as *const u32) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { write_volatile((self.base + off) as *mut u32, v) }
    }

    fn mac_write(&self, index: u32, v: u32) {
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
        self.write(MAC_CSR_DATA, v);
        self.write(MAC_CSR_CMD, CSR_BUSY | index);
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
    }

    /// Moves one received frame into `buf`; returns its length (None: nothing, or a bad frame).
    fn pop_frame(&self, buf: &mut [u8; FRAME]) -> Option<Option<usize>> {
        if (self.read(RX_FIFO_INF) >> 16) & 0xff == 0 {
            return None;
        }
        let status = self.read(RX_STATUS_FIFO);
        let len = ((status >> 16) & 0x3fff) as usize; // includes the 4-byte FCS
        for i in 0..len.div_ceil(4) {
            let w = self.read(RX_DATA_FIFO).to_le_bytes();
            for (j, b) in w.iter().enumerate() {
                if let Some(slot) = buf.get_mut(i * 4 + j) {
                    *slot = *b;
                }
            }
        }
        let error = status & (1 << 15) != 0;
        let frame = len.saturating_sub(4);
        Some((!error && frame <= FRAME).then_some(frame))
    }

    fn push_frame(&self, frame: &[u8]) {
        let len = frame.len() as u32;
        // Wait for room (data plus the two command words); the FIFO drains at wire speed.
        while (self.read(TX_FIFO_INF) & 0xffff) < len + 8 {}
        self.write(TX_DATA_FIFO, (1 << 13) | (1 << 12) | len); // command A: first and last segment
        self.write(TX_DATA_FIFO, len); // command B: packet length
        for chunk in frame.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write(TX_DATA_FIFO, u32::from_le_bytes(w));
        }
        // Discard transmit statuses so that their FIFO never fills.
        while (self.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            let _ = self.read(TX_STATUS_FIFO);
        }
    }
}

/// A received frame.
pub struct Rx<'a>(&'a mut [u8]);

/// Room for one frame to send.
pub struct Tx<'a> {
    regs: &'a Regs,
    buf: &'a mut [u8; FRAME],
}

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(FRAME);
        let r = f(&mut self.buf[..len]);
        self.regs.push_frame(&self.buf[..len]);
        r
    }
}

impl Driver for Lan9118 {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        loop {
            match self.regs.pop_frame(&mut self.rx) {
                Some(Some(n)) => {
                    return Some((Rx(&mut self.rx[..n]), Tx { regs: &self.regs, buf: &mut self.tx }));
                }
                Some(None) => continue, // a bad frame: drop it, look at the next
                None => {
                    // Nothing received: look again on the next tick.
                    embassy_time_driver::schedule_wake(embassy_time_driver::now() + 1, cx.waker());
                    return None;
                }
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<Self::TxToken<'_>> {
        Some(Tx { regs: &self.regs, buf: &mut self.tx })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = FRAME;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
