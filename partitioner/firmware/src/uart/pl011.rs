//! Arm PrimeCell PL011 (QEMU `virt`, the Raspberry Pi 4's UART0).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    Pl011Regs {
        (0x000 => dr: ReadWrite<u32>),
        (0x004 => _r0),
        (0x018 => fr: ReadOnly<u32>),
        (0x01c => _r1),
        (0x030 => cr: ReadWrite<u32>),
        (0x034 => _r2),
        (0x038 => imsc: ReadWrite<u32>),
        (0x03c => _r3),
        (0x044 => icr: ReadWrite<u32>),
        (0x048 => @END),
    }
}

const FR_TXFF: u32 = 1 << 5;
const FR_RXFE: u32 = 1 << 4;
/// Receive and receive-timeout interrupts (IMSC/ICR bits RXIM, RTIM).
const INT_RX_RT: u32 = (1 << 4) | (1 << 6);
const CR_UARTEN_TXE_RXE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The PL011 at `base`, enabled for transmit and receive.
    pub fn init(base: usize) -> Self {
        let u = Pl011 { base };
        let cr = u.regs().cr.get();
        u.regs().cr.set(cr | CR_UARTEN_TXE_RXE);
        u
    }

    fn regs(&self) -> &Pl011Regs {
        // SAFETY: `base` is the board's console PL011, which the partitioner owns exclusively
        // (validation rejects any domain mapping it), is mapped as device memory at EL2 (or the
        // MMU is off), and is valid for the whole life of the firmware.
        unsafe { &*(self.base as *const Pl011Regs) }
    }
}

impl super::ConsoleUart for Pl011 {
    fn tx_full(&self) -> bool {
        self.regs().fr.get() & FR_TXFF != 0
    }

    fn write(&self, b: u8) {
        self.regs().dr.set(b as u32);
    }

    fn get(&self) -> Option<u8> {
        (self.regs().fr.get() & FR_RXFE == 0).then(|| self.regs().dr.get() as u8)
    }

    fn enable_rx_interrupt(&self) {
        self.regs().icr.set(INT_RX_RT);
        let m = self.regs().imsc.get();
        self.regs().imsc.set(m | INT_RX_RT);
    }

    fn clear_rx_interrupt(&self) {
        self.regs().icr.set(INT_RX_RT);
    }
}
