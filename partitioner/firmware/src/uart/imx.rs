//! NXP i.MX UART (`fsl,imx6q-uart` and successors: the i.MX 8M Plus EVK's
//! console UART2). The boot loader (U-Boot, or QEMU's reset) set the line;
//! this driver only turns the transmitter and receiver on and takes the
//! receive interrupt.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    ImxUartRegs {
        (0x00 => urxd: ReadOnly<u32>),
        (0x04 => _r0),
        (0x40 => utxd: WriteOnly<u32>),
        (0x44 => _r1),
        (0x80 => ucr1: ReadWrite<u32>),
        (0x84 => ucr2: ReadWrite<u32>),
        (0x88 => _r2),
        (0x90 => ufcr: ReadWrite<u32>),
        (0x94 => usr1: ReadWrite<u32>),
        (0x98 => usr2: ReadWrite<u32>),
        (0x9c => _r3),
        (0xb4 => uts: ReadWrite<u32>),
        (0xb8 => @END),
    }
}

/// URXD: the character is valid.
const URXD_CHARRDY: u32 = 1 << 15;
/// UCR1: UART enable, receiver-ready interrupt enable.
const UCR1_UARTEN: u32 = 1 << 0;
const UCR1_RRDYEN: u32 = 1 << 9;
/// UCR2: software reset (active low: 1 = not in reset), receiver and
/// transmitter enable.
const UCR2_SRST: u32 = 1 << 0;
const UCR2_RXEN: u32 = 1 << 1;
const UCR2_TXEN: u32 = 1 << 2;
/// UFCR: receiver trigger level (bits 5:0).
const UFCR_RXTL_MASK: u32 = 0x3f;
/// USR1: ageing timer (write 1 to clear).
const USR1_AGTIM: u32 = 1 << 8;
/// USR2: receive data ready (at least one character in the RX FIFO).
const USR2_RDR: u32 = 1 << 0;
/// UTS: transmit FIFO full.
const UTS_TXFULL: u32 = 1 << 4;

pub struct ImxUart {
    base: usize,
}

impl ImxUart {
    /// The i.MX UART at `base`, enabled for transmit and receive.
    pub fn init(base: usize) -> Self {
        let u = ImxUart { base };
        let r = u.regs();
        r.ucr1.set(r.ucr1.get() | UCR1_UARTEN);
        r.ucr2.set(r.ucr2.get() | UCR2_SRST | UCR2_RXEN | UCR2_TXEN);
        u
    }

    fn regs(&self) -> &ImxUartRegs {
        // SAFETY: `base` is the board's console UART, which the partitioner owns exclusively
        // (validation rejects any domain mapping it), is mapped as device memory at EL2 (or the
        // MMU is off), and is valid for the whole life of the firmware.
        unsafe { &*(self.base as *const ImxUartRegs) }
    }
}

impl super::ConsoleUart for ImxUart {
    fn tx_full(&self) -> bool {
        self.regs().uts.get() & UTS_TXFULL != 0
    }

    fn write(&self, b: u8) {
        self.regs().utxd.set(b as u32);
    }

    fn get(&self) -> Option<u8> {
        if self.regs().usr2.get() & USR2_RDR == 0 {
            return None;
        }
        let v = self.regs().urxd.get();
        (v & URXD_CHARRDY != 0).then_some(v as u8)
    }

    fn enable_rx_interrupt(&self) {
        let r = self.regs();
        // USR1.RRDY (the interrupt) is up while the RX FIFO holds at least
        // RXTL characters: 1, so while any byte waits, as on the PL011.
        r.ufcr.set((r.ufcr.get() & !UFCR_RXTL_MASK) | 1);
        r.usr1.set(USR1_AGTIM);
        r.ucr1.set(r.ucr1.get() | UCR1_RRDYEN);
    }

    fn clear_rx_interrupt(&self) {
        // RRDY is not a latch: it drops by itself when reading takes the
        // FIFO below the trigger level (empty). Only the ageing timer
        // (should the boot loader have left UCR2.ATEN on) is write-1-to-clear.
        self.regs().usr1.set(USR1_AGTIM);
    }
}
