//! The console: a write-only, polled PL011 driver.
//!
//! The UART is the node `/chosen/stdout-path` names (a passthrough PL011 or
//! the partitioner's virtual console, which emulates the data register and
//! reports an empty FIFO), or [`crate::DEFAULT_CONSOLE`]. Each byte waits
//! while the transmit FIFO is full (`FR.TXFF`) and is then written to `DR`.
//! No line-ending translation: lines end in `\n` alone.
//!
//! [`crate::print!`]/[`crate::println!`] and [`write_str`] hold a console lock, with
//! interrupts masked, for the whole of their text: lines from different
//! vCPUs, or from an interrupt handler and the code it interrupted, never
//! mix. The lock is re-entrant on the vCPU holding it (so an exception
//! report in the middle of a line still prints), and a vCPU that cannot get
//! it within [`LOCK_PATIENCE_MS`] prints anyway rather than hang (the
//! holder may have halted).

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// How long a vCPU waits for the console lock before printing regardless.
pub const LOCK_PATIENCE_MS: u64 = 100;

/// Holder of the console lock: vCPU index + 1, 0 when free.
static OWNER: AtomicUsize = AtomicUsize::new(0);

/// Data register.
const UARTDR: usize = 0x000;
/// Flag register.
const UARTFR: usize = 0x018;
/// Flag register: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// Flag register: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// Interrupt mask set/clear register.
const UARTIMSC: usize = 0x038;
/// Interrupt clear register.
const UARTICR: usize = 0x044;
/// Receive and receive-timeout interrupts (IMSC, ICR bits).
const INT_RX: u32 = 1 << 4;
const INT_RT: u32 = 1 << 6;
/// Every interrupt of ICR.
const INT_ALL: u32 = 0x7ff;

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
    // SAFETY: `base` is the console PL011's register block: either the default UART or the `reg` of the node the device tree's
    // stdout-path names, which `info::console_from_dtb` checked lies outside the image and the device tree. FR and DR are 32-bit
    // registers at 4-byte aligned offsets; reading FR and writing DR have no effect on memory Rust owns.
    unsafe {
        while core::ptr::read_volatile((base + UARTFR) as *const u32) & FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        core::ptr::write_volatile((base + UARTDR) as *mut u32, u32::from(byte));
    }
}

fn read_reg(offset: usize) -> u32 {
    // SAFETY: a 4-byte aligned register of the console PL011 (see `write_byte` for
    // why its base is sound); reading FR, DR or IMSC changes no memory Rust owns
    // (reading DR pops the receive FIFO, which is the point).
    unsafe { core::ptr::read_volatile((base() + offset) as *const u32) }
}

fn write_reg(offset: usize, value: u32) {
    // SAFETY: as for `read_reg`: a console PL011 register, not memory.
    unsafe { core::ptr::write_volatile((base() + offset) as *mut u32, value) }
}

/// Unmasks the console UART's receive interrupts (RXIM and RTIM: one
/// character, or a partly filled FIFO that stays idle, raises it), after
/// clearing any already raised. The interrupt itself must be configured in
/// the GIC as well (see [`crate::console_intid`]).
pub fn enable_rx_interrupt() {
    write_reg(UARTICR, INT_ALL);
    write_reg(UARTIMSC, read_reg(UARTIMSC) | INT_RX | INT_RT);
}

/// Takes one received byte, if the receive FIFO holds one.
pub fn read_byte() -> Option<u8> {
    (read_reg(UARTFR) & FR_RXFE == 0).then(|| read_reg(UARTDR) as u8)
}

/// Clears the receive interrupts. Call it before emptying the FIFO with
/// [`read_byte`], so a byte arriving meanwhile raises them again.
pub fn clear_rx_interrupt() {
    write_reg(UARTICR, INT_RX | INT_RT);
}

/// Runs `f` holding the console lock, with IRQs masked.
pub fn locked<R>(f: impl FnOnce() -> R) -> R {
    crate::irq::masked(|| {
        let me = crate::cpu::index() + 1;
        let mut held = OWNER.load(Ordering::Relaxed) != me;
        if held {
            let patience = crate::time::frequency() * LOCK_PATIENCE_MS / 1000;
            let start = crate::time::ticks();
            while OWNER
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                if crate::time::ticks().wrapping_sub(start) > patience {
                    held = false;
                    break;
                }
                core::hint::spin_loop();
            }
        }
        let result = f();
        if held {
            OWNER.store(0, Ordering::Release);
        }
        result
    })
}

/// Writes a string as is, under the console lock.
pub fn write_str(s: &str) {
    locked(|| s.bytes().for_each(write_byte));
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
    locked(|| {
        let _ = fmt::write(&mut Console, args);
    });
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
