//! The partitioner's console: a polled PL011 that the partitioner owns
//! outright. Its own log lines start with `bulkhead: `; lines from domains on
//! the virtual console start with `[<domain>] ` (see `bulkhead_core::vconsole`).
//! Whole lines go out in turn, so lines from different cores never mix, and
//! in the order the cores asked (see [`TURN`]).

use bulkhead_core::ticket::TicketLock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};
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

    fn put_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put_bytes(s.as_bytes());
        Ok(())
    }
}

/// The console UART's base address; 0 until [`init`].
static BASE: AtomicUsize = AtomicUsize::new(0);
/// Whose turn it is to send a line: a FIFO ticket lock, so a core waiting
/// for the console is served after the cores that asked before it, however
/// often any of them asks. It is held only while a finished line's bytes
/// go out, and nothing else is ever held with it: a line is formatted on
/// the printing core's own stack first, and every caller prints with no
/// other lock held.
static TURN: TicketLock = TicketLock::new();

/// Longest line formatted before the console is taken; a longer one (only
/// the partitioner's own, never a domain's) is formatted as it goes out.
const LINE_MAX: usize = 512;

/// A line being formatted, on the stack of the core that prints it.
struct LineBuf {
    bytes: [u8; LINE_MAX],
    len: usize,
}

impl LineBuf {
    const fn new() -> Self {
        Self {
            bytes: [0; LINE_MAX],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > LINE_MAX {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn uart() -> Option<Pl011> {
    match BASE.load(Ordering::Acquire) {
        0 => None,
        base => Some(Pl011 { base }),
    }
}

/// Start the console on the PL011 at `base`.
pub fn init(console: bulkhead_core::board::Uart) {
    // The one kind of console UART so far; another kind is another driver
    // behind the same functions.
    let bulkhead_core::board::UartKind::Pl011 = console.kind;
    let base = console.reg.base;
    let uart = Pl011 {
        base: base as usize,
    };
    let cr = uart.regs().cr.get();
    uart.regs().cr.set(cr | CR_UARTEN_TXE_RXE);
    BASE.store(base as usize, Ordering::Release);
    // A second init (never done) would only fail to install the logger again.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Interrupt the partitioner when a byte arrives (the console's receive
/// and receive-timeout interrupts; the GIC side is the caller's).
pub fn enable_rx() {
    if let Some(uart) = uart() {
        uart.regs().icr.set(INT_RX_RT);
        let m = uart.regs().imsc.get();
        uart.regs().imsc.set(m | INT_RX_RT);
    }
}

/// Hand every byte waiting in the receive FIFO to `f` (which ends the
/// receive interrupt: it stays up only while bytes wait). Reading does not
/// need the console's turn: only the one core the interrupt is routed to
/// ever reads.
pub fn receive(mut f: impl FnMut(u8)) {
    let Some(uart) = uart() else { return };
    // Clear the interrupt first, then drain: a byte that arrives after the
    // last read raises it again. (Clearing after draining loses a byte
    // that arrives in between: the interrupt would be cleared with the
    // byte still waiting, and nothing raises it again.)
    uart.regs().icr.set(INT_RX_RT);
    // Bounded: a FIFO holds 32 bytes; what comes meanwhile raises the
    // interrupt again.
    for _ in 0..64 {
        if uart.regs().fr.get() & FR_RXFE != 0 {
            break;
        }
        f(uart.regs().dr.get() as u8);
    }
}

/// Send `parts` as one line (each `\n` as `\r\n`), in this core's turn.
fn send(parts: &[&[u8]]) {
    let Some(uart) = uart() else { return };
    let _turn = TURN.lock();
    for part in parts {
        uart.put_bytes(part);
    }
}

/// Print one whole line, `prefix` then `args`, atomically.
pub fn line(prefix: &str, args: fmt::Arguments) {
    let mut buf = LineBuf::new();
    if writeln!(buf, "{prefix}{args}").is_ok() {
        send(&[buf.as_bytes()]);
    } else if let Some(mut uart) = uart() {
        // Too long to format first: format it while it goes out.
        let _turn = TURN.lock();
        let _ = uart.write_str(prefix);
        let _ = uart.write_fmt(args);
        let _ = uart.write_str("\n");
    }
}

/// Print a last line even if this core died holding the console: wait a
/// while for the console to be free, then print anyway (at worst two lines
/// mix). Never takes a ticket it might not give back: the caller halts.
pub fn emergency_line(prefix: &str, args: fmt::Arguments) {
    let Some(mut uart) = uart() else { return };
    let mut turn = None;
    for _ in 0..10_000_000 {
        turn = TURN.try_lock();
        if turn.is_some() {
            break;
        }
        core::hint::spin_loop();
    }
    let _ = uart.write_str(prefix);
    let _ = uart.write_fmt(args);
    let _ = uart.write_str("\n");
    drop(turn);
}

/// Print one line from a domain's virtual console: `[name] text`.
pub fn domain_line(name: &str, text: &[u8]) {
    send(&[b"[", name.as_bytes(), b"] ", text, b"\n"]);
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
