//! Drivers for the partitioner's console UART, one file per kind behind
//! [`ConsoleUart`]. A board names the kind and address of its console
//! (`bulkhead_core::board::Uart`); a new kind of UART is a new file here, a
//! variant of `UartKind` and an arm in [`init`].

mod cadence;
mod imx;
mod pl011;

use bulkhead_core::board::{Uart, UartKind};
use spin::Once;

/// What the console needs of a UART: polled transmit, and receive with an
/// interrupt (for `Ctrl-a` commands and the virtual consoles' input).
/// How long a byte may wait for room is the console's decision
/// (`crate::console`), not the driver's.
pub trait ConsoleUart: Sync {
    /// Whether the transmitter has no room for another byte.
    fn tx_full(&self) -> bool;
    /// Send one byte (the caller has seen room for it).
    fn write(&self, byte: u8);
    /// One received byte, if any is waiting.
    fn get(&self) -> Option<u8>;
    /// Raise the UART's interrupt while received bytes wait.
    fn enable_rx_interrupt(&self);
    /// Acknowledge the receive interrupt (called before draining, so a byte
    /// that arrives after the last read raises it again).
    fn clear_rx_interrupt(&self);
}

enum Driver {
    Pl011(pl011::Pl011),
    Imx(imx::ImxUart),
    Cadence(cadence::Cadence),
}

static DRIVER: Once<Driver> = Once::new();

/// Start the board's console UART (transmit and receive on; the line
/// settings are the boot loader's) and make it the console's.
pub fn init(uart: Uart) -> &'static dyn ConsoleUart {
    let d = DRIVER.call_once(|| match uart.kind {
        UartKind::Pl011 => Driver::Pl011(pl011::Pl011::init(uart.reg.base as usize)),
        UartKind::Imx => Driver::Imx(imx::ImxUart::init(uart.reg.base as usize)),
        UartKind::Cadence => Driver::Cadence(cadence::Cadence::init(uart.reg.base as usize)),
    });
    as_dyn(d)
}

/// The console UART, once [`init`] ran.
pub fn get() -> Option<&'static dyn ConsoleUart> {
    DRIVER.get().map(as_dyn)
}

fn as_dyn(d: &'static Driver) -> &'static dyn ConsoleUart {
    match d {
        Driver::Pl011(u) => u,
        Driver::Imx(u) => u,
        Driver::Cadence(u) => u,
    }
}
