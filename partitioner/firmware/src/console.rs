//! The partitioner's console: the board's console UART (a driver in
//! `crate::uart`), polled, which the partitioner owns outright. Its own log
//! lines start with `bulkhead: `; lines from domains on the virtual console
//! start with `[<domain>] ` (see `bulkhead_core::vconsole`).
//! Whole lines go out in turn, so lines from different cores never mix, and
//! in the order the cores asked (see [`TURN`]).

use crate::uart::ConsoleUart;
use aarch64_cpu::registers::{Readable, CNTFRQ_EL0, CNTPCT_EL0};
use bulkhead_core::console::Transmit;
use bulkhead_core::ticket::TicketLock;
use core::fmt::{self, Write};
use spin::Mutex;

/// The console UART as a `fmt::Write` sink (each `\n` sent as `\r\n`),
/// each byte waiting a bounded time for room ([`STALL_MS`], see
/// `bulkhead_core::console`).
struct Out<'a> {
    uart: &'static dyn ConsoleUart,
    tx: &'a mut Transmit,
}

/// Longest wait for room for one byte before the console counts as
/// stalled. A working UART makes room in a byte's time (87 us at 115200
/// baud, 1 ms at 9600); a terminal or emulator backend that reads late
/// may hold the FIFO full much longer, and a line must not be lost for
/// that: a second is far beyond both, and a stall costs it only once.
const STALL_MS: u64 = 1000;

/// The transmitter's state, taken with the console's turn (see [`TURN`]).
static TX: Mutex<Transmit> = Mutex::new(Transmit::new());

impl Out<'_> {
    fn put(&mut self, b: u8) {
        // A counter frequency left at 0 by the boot firmware: take 1 MHz.
        let limit = CNTFRQ_EL0.get().max(1_000_000) * STALL_MS / 1000;
        let uart = self.uart;
        if self.tx.room(|| uart.tx_full(), || CNTPCT_EL0.get(), limit) {
            uart.write(b);
        }
    }

    fn put_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    /// Before a line: how many bytes a stalled transmitter cost, once it
    /// has room again.
    fn report_dropped(&mut self) {
        if let Some(n) = self.tx.take_dropped() {
            let _ = writeln!(
                self,
                "bulkhead: warning: console: {n} bytes lost while its UART did not drain"
            );
        }
    }
}

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put_bytes(s.as_bytes());
        Ok(())
    }
}

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

/// Start the console on the board's console UART.
pub fn init(console: bulkhead_core::board::Uart) {
    crate::uart::init(console);
    // A second init (never done) would only fail to install the logger again.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Interrupt the partitioner when a byte arrives (the console's receive
/// interrupt; the GIC side is the caller's).
pub fn enable_rx() {
    if let Some(uart) = crate::uart::get() {
        uart.enable_rx_interrupt();
    }
}

/// Hand every byte waiting in the receive FIFO to `f` (which ends the
/// receive interrupt: it stays up only while bytes wait). Reading does not
/// need the console's turn: only the one core the interrupt is routed to
/// ever reads.
pub fn receive(mut f: impl FnMut(u8)) {
    let Some(uart) = crate::uart::get() else {
        return;
    };
    // Clear the interrupt first, then drain: a byte that arrives after the
    // last read raises it again. (Clearing after draining loses a byte
    // that arrives in between: the interrupt would be cleared with the
    // byte still waiting, and nothing raises it again.)
    uart.clear_rx_interrupt();
    // Bounded: a FIFO holds 32 bytes; what comes meanwhile raises the
    // interrupt again.
    for _ in 0..64 {
        match uart.get() {
            Some(b) => f(b),
            None => break,
        }
    }
}

/// Send `parts` as one line (each `\n` as `\r\n`), in this core's turn.
fn send(parts: &[&[u8]]) {
    let Some(uart) = crate::uart::get() else {
        return;
    };
    let _turn = TURN.lock();
    let mut tx = TX.lock();
    let mut out = Out { uart, tx: &mut tx };
    out.report_dropped();
    for part in parts {
        out.put_bytes(part);
    }
}

/// Print one whole line, `prefix` then `args`, atomically.
pub fn line(prefix: &str, args: fmt::Arguments) {
    let mut buf = LineBuf::new();
    if writeln!(buf, "{prefix}{args}").is_ok() {
        send(&[buf.as_bytes()]);
    } else if let Some(uart) = crate::uart::get() {
        // Too long to format first: format it while it goes out.
        let _turn = TURN.lock();
        let mut tx = TX.lock();
        let mut out = Out { uart, tx: &mut tx };
        out.report_dropped();
        let _ = out.write_str(prefix);
        let _ = out.write_fmt(args);
        let _ = out.write_str("\n");
    }
}

/// Print a last line even if this core died holding the console: wait a
/// while for the console to be free, then print anyway (at worst two lines
/// mix). Never takes a ticket it might not give back: the caller halts.
pub fn emergency_line(prefix: &str, args: fmt::Arguments) {
    let Some(uart) = crate::uart::get() else {
        return;
    };
    let mut turn = None;
    for _ in 0..10_000_000 {
        turn = TURN.try_lock();
        if turn.is_some() {
            break;
        }
        core::hint::spin_loop();
    }
    // The shared state if it is free; else (its holder died) one of this
    // line's own, which waits for a stalled transmitter once.
    let mut own = Transmit::new();
    let mut shared = TX.try_lock();
    let tx = match shared.as_deref_mut() {
        Some(tx) => tx,
        None => &mut own,
    };
    let mut out = Out { uart, tx };
    let _ = out.write_str(prefix);
    let _ = out.write_fmt(args);
    let _ = out.write_str("\n");
    drop(shared);
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
