//! The virtual console: the one deliberately shared path. A domain without a
//! UART of its own gets an emulated PL011 (transmit only) at
//! [`crate::plan::VIRTUAL_CONSOLE_IPA`]; every write traps to the partitioner,
//! which collects characters into lines and prints each complete line on its
//! own console tagged with the domain's name. A domain can only ever add
//! whole, tagged lines: it cannot read the console, see other domains'
//! output, or forge another domain's tag.

/// PL011 register offsets the emulation implements.
const DR: u64 = 0x000;
const FR: u64 = 0x018;
/// FR bits: transmit FIFO empty, receive FIFO empty.
const FR_TXFE: u64 = 1 << 7;
const FR_RXFE: u64 = 1 << 4;
/// PrimeCell peripheral and cell IDs of a PL011 r1p5 at 0xFE0..0xFFC.
const IDS: [u64; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest line kept; longer lines are printed in pieces.
pub const LINE: usize = 120;

/// One domain's virtual UART.
pub struct VirtualConsole {
    line: heapless::Vec<u8, LINE>,
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
        }
    }

    /// A read of `offset` within the UART page.
    pub fn read(&self, offset: u64) -> u64 {
        match offset {
            FR => FR_TXFE | FR_RXFE,
            0xfe0..=0xffc if offset.is_multiple_of(4) => IDS[((offset - 0xfe0) / 4) as usize],
            _ => 0,
        }
    }

    /// A write of `value` to `offset`. When a line is complete (newline or
    /// full), `emit` receives it, without the newline; control characters other
    /// than tab are dropped so a domain cannot rewrite the console's screen.
    pub fn write(&mut self, offset: u64, value: u64, mut emit: impl FnMut(&[u8])) {
        if offset != DR {
            return; // control registers: accepted and ignored
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
        assert_eq!(c.read(DR), 0);
        assert_eq!(c.read(0xfe0), 0x11);
        assert_eq!(c.read(0xffc), 0xb1);
        let mut n = 0;
        c.write(0x030, 0x301, |_| n += 1);
        assert_eq!(n, 0, "control register writes print nothing");
    }
}
