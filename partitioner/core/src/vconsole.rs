//! The virtual console: the one deliberately shared path. A domain without a
//! UART of its own gets an emulated PL011 at
//! [`crate::plan::VIRTUAL_CONSOLE_IPA`] with one interrupt, the virtual SPI
//! [`crate::plan::VIRTUAL_CONSOLE_SPI`]. Every register access traps to the
//! partitioner: characters written are collected into lines, and each
//! complete line is printed on the partitioner's own console tagged with the
//! domain's name; characters typed on the partitioner's console while the
//! domain has the console's input focus are queued in its receive FIFO. A
//! domain can only ever add whole, tagged lines: it cannot see other
//! domains' output or their input, or forge another domain's tag.
//!
//! # The emulated PL011
//!
//! | offset | register | behaviour |
//! |---|---|---|
//! | 0x000 | `DR` | write: a character for the current line; read: the oldest received byte (0 if none) |
//! | 0x004 | `RSR/ECR` | reads 0 (no errors ever); writes ignored |
//! | 0x018 | `FR` | `TXFE` always (the transmit FIFO is always empty, never `TXFF` or `BUSY`); `RXFE` when nothing is received, `RXFF` when the receive FIFO is full |
//! | 0x024, 0x028, 0x02c, 0x030 | `IBRD`, `FBRD`, `LCR_H`, `CR` | stored and read back, no effect |
//! | 0x034 | `IFLS` | stored; its receive level sets when `RXIS` is raised |
//! | 0x038 | `IMSC` | interrupt mask (bits 10:0) |
//! | 0x03c | `RIS` | `TXIS` always (the empty transmit FIFO is below any level); `RXIS` while the receive FIFO holds at least the `IFLS` level (of a 32-byte FIFO: 4, 8, 16, 24 or 28 bytes); `RTIS` while it holds anything |
//! | 0x040 | `MIS` | `RIS & IMSC` |
//! | 0x044 | `ICR` | accepted: every raw interrupt is a condition, not a latched event, so it stays raised while its condition holds |
//! | 0xfe0..0xffc | IDs | a PL011 r1p5 |
//!
//! The interrupt line is `MIS != 0` (level). That is what Linux's
//! `amba-pl011` driver (no DMA) needs: it enables `TXIM` when it has
//! characters to send and keeps writing from its interrupt handler until
//! it has none, then masks `TXIM` again; it takes received bytes on `RXIS`
//! or `RTIS` until `FR.RXFE`.
//!
//! The receive FIFO holds [`RX_FIFO`] bytes: a byte typed when it is full is
//! dropped and counted ([`VirtualConsole::dropped`]), never waited for.

/// PL011 register offsets the emulation implements.
const DR: u64 = 0x000;
const RSR: u64 = 0x004;
const FR: u64 = 0x018;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
/// FR bits: transmit FIFO empty, receive FIFO full, transmit FIFO full,
/// receive FIFO empty, busy.
pub const FR_TXFE: u64 = 1 << 7;
pub const FR_RXFF: u64 = 1 << 6;
pub const FR_TXFF: u64 = 1 << 5;
pub const FR_RXFE: u64 = 1 << 4;
pub const FR_BUSY: u64 = 1 << 3;
/// Interrupt bits (IMSC, RIS, MIS, ICR): receive, transmit, receive timeout.
pub const INT_RX: u64 = 1 << 4;
pub const INT_TX: u64 = 1 << 5;
pub const INT_RT: u64 = 1 << 6;
/// Every interrupt bit of a PL011.
const INT_ALL: u64 = 0x7ff;
/// Reset values: CR (TXE, RXE), IFLS (both levels at half).
const CR_RESET: u16 = 0x300;
const IFLS_RESET: u16 = 0x12;
/// PrimeCell peripheral and cell IDs of a PL011 r1p5 at 0xFE0..0xFFC.
const IDS: [u64; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest line kept; longer lines are printed in pieces.
pub const LINE: usize = 120;
/// Bytes the receive FIFO holds.
pub const RX_FIFO: usize = 64;

/// One domain's virtual UART.
pub struct VirtualConsole {
    line: heapless::Vec<u8, LINE>,
    rx: heapless::Deque<u8, RX_FIFO>,
    imsc: u16,
    cr: u16,
    lcr_h: u16,
    ibrd: u16,
    fbrd: u16,
    ifls: u16,
    dropped: u64,
}

impl Default for VirtualConsole {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualConsole {
    pub const fn new() -> Self {
        Self {
            line: heapless::Vec::new(),
            rx: heapless::Deque::new(),
            imsc: 0,
            cr: CR_RESET,
            lcr_h: 0,
            ibrd: 0,
            fbrd: 0,
            ifls: IFLS_RESET,
            dropped: 0,
        }
    }

    /// Receive level (`IFLS.RXIFLSEL`) in bytes, of a 32-byte FIFO.
    fn rx_level(&self) -> usize {
        match (self.ifls >> 3) & 0b111 {
            0 => 4,
            1 => 8,
            2 => 16,
            3 => 24,
            _ => 28,
        }
    }

    /// Raw interrupt status (`RIS`).
    pub fn raw_interrupts(&self) -> u64 {
        let mut ris = INT_TX;
        if !self.rx.is_empty() {
            ris |= INT_RT;
        }
        if self.rx.len() >= self.rx_level() {
            ris |= INT_RX;
        }
        ris
    }

    /// Masked interrupt status (`MIS`).
    pub fn masked_interrupts(&self) -> u64 {
        self.raw_interrupts() & u64::from(self.imsc)
    }

    /// Whether the UART's interrupt line is asserted (level).
    pub fn interrupt(&self) -> bool {
        self.masked_interrupts() != 0
    }

    /// A byte typed for the domain: queued in the receive FIFO; false (and
    /// counted) if the FIFO is full and it was dropped.
    pub fn receive(&mut self, b: u8) -> bool {
        if self.rx.push_back(b).is_ok() {
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Bytes dropped because the receive FIFO was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting in the receive FIFO.
    pub fn pending_input(&self) -> usize {
        self.rx.len()
    }

    /// A read of `offset` within the UART page. Reading `DR` takes the
    /// oldest received byte.
    pub fn read(&mut self, offset: u64) -> u64 {
        match offset {
            DR => self.rx.pop_front().map_or(0, u64::from),
            FR => {
                let mut fr = FR_TXFE;
                if self.rx.is_empty() {
                    fr |= FR_RXFE;
                }
                if self.rx.is_full() {
                    fr |= FR_RXFF;
                }
                fr
            }
            IBRD => u64::from(self.ibrd),
            FBRD => u64::from(self.fbrd),
            LCR_H => u64::from(self.lcr_h),
            CR => u64::from(self.cr),
            IFLS => u64::from(self.ifls),
            IMSC => u64::from(self.imsc),
            RIS => self.raw_interrupts(),
            MIS => self.masked_interrupts(),
            0xfe0..=0xffc if offset.is_multiple_of(4) => IDS[((offset - 0xfe0) / 4) as usize],
            _ => 0,
        }
    }

    /// A write of `value` to `offset`. When a line is complete (newline or
    /// full), `emit` receives it, without the newline; control characters other
    /// than tab are dropped so a domain cannot rewrite the console's screen.
    pub fn write(&mut self, offset: u64, value: u64, mut emit: impl FnMut(&[u8])) {
        let reg = value as u16;
        match offset {
            DR => {}
            IBRD => self.ibrd = reg,
            FBRD => self.fbrd = reg & 0x3f,
            LCR_H => self.lcr_h = reg & 0xff,
            CR => self.cr = reg,
            IFLS => self.ifls = reg & 0x3f,
            IMSC => self.imsc = (value & INT_ALL) as u16,
            // RSR/ECR clears errors (there are none); ICR clears latched
            // interrupts (there are none: see the module docs).
            RSR | ICR => {}
            _ => {}
        }
        if offset != DR {
            return;
        }
        match value as u8 {
            b'\n' => {
                emit(&self.line);
                self.line.clear();
            }
            b'\t' | 0x20..=0x7e if self.line.push(value as u8).is_err() => {
                emit(&self.line);
                self.line.clear();
                let _ = self.line.push(value as u8);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn feed(c: &mut VirtualConsole, s: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in s {
            c.write(DR, b as u64, |l| out.push(l.to_vec()));
        }
        out
    }

    #[test]
    fn collects_lines_and_drops_control_characters() {
        let mut c = VirtualConsole::new();
        let out = feed(&mut c, b"hi\r\n\x1b[2Jthere\tx\npartial");
        assert_eq!(out, vec![b"hi".to_vec(), b"[2Jthere\tx".to_vec()]);
        assert_eq!(feed(&mut c, b"\n"), vec![b"partial".to_vec()]);
    }

    #[test]
    fn splits_overlong_lines() {
        let mut c = VirtualConsole::new();
        let out = feed(&mut c, &[b'a'; LINE + 5]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE);
        assert_eq!(feed(&mut c, b"\n")[0].len(), 5);
    }

    #[test]
    fn looks_like_an_idle_pl011() {
        let mut c = VirtualConsole::new();
        assert_eq!(c.read(FR), FR_TXFE | FR_RXFE);
        assert_eq!(c.read(FR) & (FR_TXFF | FR_BUSY | FR_RXFF), 0);
        assert_eq!(c.read(DR), 0);
        assert_eq!(c.read(0xfe0), 0x11);
        assert_eq!(c.read(0xffc), 0xb1);
        let mut n = 0;
        c.write(CR, 0x301, |_| n += 1);
        c.write(IBRD, 13, |_| n += 1);
        c.write(FBRD, 1, |_| n += 1);
        c.write(LCR_H, 0x70, |_| n += 1);
        assert_eq!(n, 0, "control register writes print nothing");
        assert_eq!(
            (c.read(CR), c.read(IBRD), c.read(FBRD), c.read(LCR_H)),
            (0x301, 13, 1, 0x70),
            "control registers read back"
        );
        assert!(!c.interrupt(), "no interrupt while everything is masked");
    }

    #[test]
    fn tx_interrupt_is_raised_while_enabled_as_linux_needs() {
        let mut c = VirtualConsole::new();
        // The empty transmit FIFO is always below the level.
        assert_eq!(c.read(RIS) & INT_TX, INT_TX);
        assert_eq!(c.read(MIS), 0);
        c.write(IMSC, INT_TX, |_| {});
        assert!(c.interrupt());
        assert_eq!(c.read(MIS), INT_TX);
        // Clearing it does not lower it: the FIFO is still empty, the
        // driver keeps writing until it masks TXIM.
        c.write(ICR, INT_ALL, |_| {});
        c.write(DR, b'x' as u64, |_| {});
        assert!(c.interrupt());
        c.write(IMSC, 0, |_| {});
        assert!(!c.interrupt());
        assert_eq!(c.read(MIS), 0);
    }

    #[test]
    fn receive_fifo_and_rx_interrupts() {
        let mut c = VirtualConsole::new();
        c.write(IMSC, INT_RX | INT_RT, |_| {});
        assert!(!c.interrupt(), "nothing received yet");
        assert!(c.receive(b'a'));
        // One byte: the timeout interrupt, below the receive level.
        assert_eq!(c.read(RIS) & (INT_RX | INT_RT), INT_RT);
        assert!(c.interrupt());
        assert_eq!(c.read(FR) & FR_RXFE, 0);
        for b in b"bcdefghijklmnop" {
            assert!(c.receive(*b));
        }
        // 16 bytes: the default level (half of 32) is reached.
        assert_eq!(c.read(MIS), INT_RX | INT_RT);
        // Masking RX only still leaves RT; masking both lowers the line.
        c.write(IMSC, INT_RT, |_| {});
        assert_eq!(c.read(MIS), INT_RT);
        c.write(IMSC, 0, |_| {});
        assert!(!c.interrupt());
        c.write(IMSC, INT_RX | INT_RT, |_| {});
        // ICR does not drop data or lower a condition that still holds.
        c.write(ICR, INT_RX | INT_RT, |_| {});
        assert!(c.interrupt());
        let got: Vec<u8> = (0..16).map(|_| c.read(DR) as u8).collect();
        assert_eq!(got, b"abcdefghijklmnop");
        assert_eq!(c.read(FR) & FR_RXFE, FR_RXFE);
        assert!(!c.interrupt(), "drained: the line drops");
        assert_eq!(c.read(DR), 0, "an empty FIFO reads as zero");
    }

    #[test]
    fn rx_level_follows_ifls() {
        let mut c = VirtualConsole::new();
        c.write(IMSC, INT_RX, |_| {});
        c.write(IFLS, 0, |_| {}); // 1/8: 4 bytes
        for b in b"abc" {
            c.receive(*b);
        }
        assert!(!c.interrupt());
        c.receive(b'd');
        assert!(c.interrupt());
        c.write(IFLS, 4 << 3, |_| {}); // 7/8: 28 bytes
        assert!(!c.interrupt());
    }

    #[test]
    fn a_full_receive_fifo_drops_and_counts() {
        let mut c = VirtualConsole::new();
        for i in 0..RX_FIFO {
            assert!(c.receive(i as u8));
        }
        assert_eq!(c.read(FR) & FR_RXFF, FR_RXFF);
        assert!(!c.receive(b'x'));
        assert!(!c.receive(b'y'));
        assert_eq!(c.dropped(), 2);
        assert_eq!(c.pending_input(), RX_FIFO);
        // What was queued comes out, in order, and nothing else.
        for i in 0..RX_FIFO {
            assert_eq!(c.read(DR), i as u64);
        }
        assert_eq!(c.read(FR) & (FR_RXFE | FR_RXFF), FR_RXFE);
        assert!(c.receive(b'z'), "room again");
        assert_eq!(c.read(DR), b'z' as u64);
    }

    #[test]
    fn input_never_turns_into_output() {
        // What is typed for a domain is only readable by it: it is never
        // printed, and never changes the line being written.
        let mut c = VirtualConsole::new();
        let mut out = feed(&mut c, b"abc");
        for b in b"[other] forged\n" {
            c.receive(*b);
        }
        out.extend(feed(&mut c, b"\n"));
        assert_eq!(out, vec![b"abc".to_vec()]);
    }

    #[test]
    fn a_domain_cannot_forge_a_tag_on_a_line_of_its_own() {
        // A carriage return or escape cannot move back to the start of the
        // screen line: whatever a domain writes follows its own tag.
        let mut c = VirtualConsole::new();
        let out = feed(
            &mut c,
            b"x\r[hello] fake\n\x1b[1Gbulkhead: fake\n\x08\x08y\n",
        );
        assert_eq!(
            out,
            vec![
                b"x[hello] fake".to_vec(),
                b"[1Gbulkhead: fake".to_vec(),
                b"y".to_vec()
            ]
        );
    }
}
