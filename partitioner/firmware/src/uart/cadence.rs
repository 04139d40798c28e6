//! Cadence UART (`cdns,uart-r1p12`): the Xilinx Zynq UltraScale+ MPSoC's
//! UART0/UART1 (ZCU102). Registers from AMD UG1085 (Zynq UltraScale+ TRM,
//! "UART Controller") and UG1087; behaviour verified under QEMU 10's
//! `cadence_uart` model.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    CadenceRegs {
        /// Control: resets, enables and disables.
        (0x000 => cr: ReadWrite<u32>),
        (0x004 => _mr),
        /// Interrupt enable / disable (write 1 to a bit), mask (read).
        (0x008 => ier: ReadWrite<u32>),
        (0x00c => idr: ReadWrite<u32>),
        (0x010 => _imr),
        /// Channel interrupt status: sticky, write 1 to clear.
        (0x014 => isr: ReadWrite<u32>),
        (0x018 => _baud),
        /// Receiver timeout, in 4-bit-period units (0: off).
        (0x01c => rxtout: ReadWrite<u32>),
        /// Receive FIFO trigger level.
        (0x020 => rxwm: ReadWrite<u32>),
        (0x024 => _modem),
        /// Channel status.
        (0x02c => sr: ReadOnly<u32>),
        /// Transmit and receive FIFO.
        (0x030 => fifo: ReadWrite<u32>),
        (0x034 => @END),
    }
}

/// CR: RX enable, RX disable, TX enable, TX disable (the disables win).
const CR_RXEN: u32 = 1 << 2;
const CR_RXDIS: u32 = 1 << 3;
const CR_TXEN: u32 = 1 << 4;
const CR_TXDIS: u32 = 1 << 5;
/// SR: receive FIFO empty, transmit FIFO full.
const SR_RXEMPTY: u32 = 1 << 1;
const SR_TXFULL: u32 = 1 << 4;
/// Interrupt bits (IER/IDR/IMR/ISR): receive FIFO at its trigger level,
/// receiver timeout.
const INT_RTRIG: u32 = 1 << 0;
const INT_TIMEOUT: u32 = 1 << 8;
const INT_RX: u32 = INT_RTRIG | INT_TIMEOUT;
/// Every interrupt source (bits 0..13).
const INT_ALL: u32 = 0x3fff;
/// Receiver timeout: a few characters' time, so a byte below the trigger
/// level is not left waiting (unused with a trigger level of 1).
const RX_TIMEOUT: u32 = 10;

pub struct Cadence {
    base: usize,
}

impl Cadence {
    /// The Cadence UART at `base`, enabled for transmit and receive (QEMU
    /// and the silicon transmit nothing until TXEN is set); the line
    /// settings are the boot loader's.
    pub fn init(base: usize) -> Self {
        let u = Cadence { base };
        let cr = u.regs().cr.get() & !(CR_TXDIS | CR_RXDIS);
        u.regs().cr.set(cr | CR_TXEN | CR_RXEN);
        u
    }

    fn regs(&self) -> &CadenceRegs {
        // SAFETY: `base` is the board's console UART, which the partitioner owns exclusively
        // (validation rejects any domain mapping it), is mapped as device memory at EL2 (or the
        // MMU is off), and is valid for the whole life of the firmware.
        unsafe { &*(self.base as *const CadenceRegs) }
    }
}

impl super::ConsoleUart for Cadence {
    fn tx_full(&self) -> bool {
        self.regs().sr.get() & SR_TXFULL != 0
    }

    fn write(&self, b: u8) {
        self.regs().fifo.set(b as u32);
    }

    fn get(&self) -> Option<u8> {
        (self.regs().sr.get() & SR_RXEMPTY == 0).then(|| self.regs().fifo.get() as u8)
    }

    fn enable_rx_interrupt(&self) {
        // Raise it from the first byte on: trigger level 1 (the reset value
        // is 32), with the timeout for good measure.
        self.regs().rxwm.set(1);
        self.regs().rxtout.set(RX_TIMEOUT);
        self.regs().idr.set(INT_ALL & !INT_RX);
        self.regs().isr.set(INT_ALL);
        self.regs().ier.set(INT_RX);
    }

    fn clear_rx_interrupt(&self) {
        // RTRIG is set again at once while the FIFO still holds a byte.
        self.regs().isr.set(INT_RX);
    }
}
