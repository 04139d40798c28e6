//! The console: a write-only, polled PL011 driver.
//!
//! The UART is the node `/chosen/stdout-path` names (a passthrough PL011 or
//! the partitioner's virtual console, which emulates the data register and
//! reports an empty FIFO), or [`crate::DEFAULT_CONSOLE`]. Each byte waits
//! while the transmit FIFO is full (`FR.TXFF`) and is then written to `DR`.
//! No line-ending translation: lines end in `\n` alone.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Data register.
const UARTDR: usize = 0x000;
/// Flag register.
const UARTFR: usize = 0x018;
/// Flag register: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

static BASE: AtomicUsize = AtomicUsize::new(crate::DEFAULT_CONSOLE);

/// Sets the console's base address; `None` keeps the default.
pub(crate) fn init(base: Option<usize>) {
    if let Some(base) = base {
        BASE.store(base, Ordering::Relaxed);
    }
}

/// Base address of the console's PL011.
pub fn base() -> usize {
    BASE.load(Ordering::Relaxed)
}

/// Writes one byte, waiting for room in the transmit FIFO.
pub fn write_byte(byte: u8) {
    let base = base();
    // SAFETY: `base` is the console PL011's register block: either the
    // default UART or the `reg` of the node the device tree's stdout-path
    // names, which `info::console_from_dtb` checked lies outside the image
    // and the device tree. FR and DR are 32-bit registers at 4-byte aligned
    // offsets; reading FR and writing DR have no effect on memory Rust owns.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UARTDR) as *mut u32, u32::from(byte));
    }
}

/// Writes a string as is.
pub fn write_str(s: &str) {
    s.bytes().for_each(write_byte);
}

/// A [`fmt::Write`] sink for the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str(s);
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // The console never fails.
    let _ = fmt::write(&mut Console, args);
}

/// Prints to the domain's console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!($($arg)*))
    };
}

/// Prints a line (ending in `\n`) to the domain's console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
