//! The partitioner's console: a polled PL011 that the partitioner owns
//! outright. Its own log lines start with `bulkhead: `; lines from domains on
//! the virtual console start with `[<domain>] ` (see `bulkhead_core::vconsole`).
//! One lock serialises whole lines, so lines from different cores never mix.

use core::fmt::{self, Write};
use spin::Mutex;
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
        (0x034 => @END),
    }
}

const FR_TXFF: u32 = 1 << 5;
const CR_UARTEN_TXE_RXE: u32 = (1 << 0) | (1 << 8) | (1 << 9);

struct Pl011 {
    base: usize,
}

impl Pl011 {
    fn regs(&self) -> &Pl011Regs {
        // SAFETY: `base` is the board's console PL011, which the partitioner owns exclusively
        // (validation rejects any domain mapping it), is mapped as device memory at EL2 (or the
        // MMU is off), and is valid for the whole life of the firmware.
        unsafe { &*(self.base as *const Pl011Regs) }
    }

    fn put(&self, b: u8) {
        while self.regs().fr.get() & FR_TXFF != 0 {}
        self.regs().dr.set(b as u32);
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);

/// Start the console on the PL011 at `base`.
pub fn init(base: u64) {
    let uart = Pl011 {
        base: base as usize,
    };
    let cr = uart.regs().cr.get();
    uart.regs().cr.set(cr | CR_UARTEN_TXE_RXE);
    *CONSOLE.lock() = Some(uart);
    // A second init (never done) would only fail to install the logger again.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Print one whole line, `prefix` then `args`, atomically.
pub fn line(prefix: &str, args: fmt::Arguments) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_str(prefix);
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    }
}

/// Print a last line even if this core died holding the console lock: wait
/// a while for another core to finish its line, then take the lock anyway.
pub fn emergency_line(prefix: &str, args: fmt::Arguments) {
    for _ in 0..10_000_000 {
        if !CONSOLE.is_locked() {
            break;
        }
        core::hint::spin_loop();
    }
    if CONSOLE.is_locked() {
        // SAFETY: the holder is this core, interrupted in the middle of a line
        // and never resuming (the caller halts), or a core stuck for the whole
        // wait; either way the UART registers stay valid, at worst two lines mix.
        unsafe { CONSOLE.force_unlock() };
    }
    line(prefix, args);
}

/// Print one line from a domain's virtual console: `[name] text`.
pub fn domain_line(name: &str, text: &[u8]) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = write!(uart, "[{name}] ");
        for &b in text {
            uart.put(b);
        }
        let _ = uart.write_str("\n");
    }
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let prefix = match record.level() {
            log::Level::Error => "bulkhead: error: ",
            log::Level::Warn => "bulkhead: warning: ",
            _ => "bulkhead: ",
        };
        line(prefix, *record.args());
    }
    fn flush(&self) {}
}
