//! The virtual console: random reads and writes from random domains, each
//! with its own `VirtualConsole`. Every line a console emits is exactly
//! what a reference model of that domain's own writes says (printable
//! ASCII and tabs, at most `LINE` bytes, split where the model splits):
//! reads (which may take received bytes) and input typed for a domain never
//! change what it prints.
#![no_main]

use bulkhead_core::vconsole::{VirtualConsole, LINE};
use bulkhead_fuzz::Input;
use libfuzzer_sys::fuzz_target;

/// The reference: the partial line, and the lines a write completes.
#[derive(Default)]
struct Model {
    line: Vec<u8>,
}

impl Model {
    fn write(&mut self, offset: u64, value: u64, out: &mut Vec<Vec<u8>>) {
        if offset != 0 {
            return;
        }
        let b = value as u8;
        if b == b'\n' {
            out.push(std::mem::take(&mut self.line));
        } else if b == b'\t' || (0x20..=0x7e).contains(&b) {
            if self.line.len() == LINE {
                out.push(std::mem::take(&mut self.line));
            }
            self.line.push(b);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let n = 1 + input.u8() as usize % 4;
    let mut consoles: Vec<(VirtualConsole, Model)> = (0..n)
        .map(|_| (VirtualConsole::new(), Model::default()))
        .collect();
    while !input.is_empty() {
        let op = input.u8();
        let (console, model) = &mut consoles[(op >> 1) as usize % n];
        let offset = if op & 0x80 != 0 {
            u64::from(input.u16() % 0x1000)
        } else {
            0
        };
        if op & 1 == 0 {
            if op & 0x40 != 0 {
                // Input typed for this domain: queued (or dropped when the
                // FIFO is full), never printed (the model ignores it).
                console.receive(input.u8());
                continue;
            }
            let value = console.read(offset);
            match offset {
                // TXFE always; never TXFF or BUSY.
                0x018 => assert_eq!(value & 0xa8, 0x80),
                0x000 | 0xfe0..=0xffc if offset % 4 == 0 => assert!(value <= 0xff),
                _ => assert!(value <= 0xffff, "read at {offset:#x}"),
            }
            continue;
        }
        let value = if op & 0x40 != 0 {
            input.u64()
        } else {
            u64::from(input.u8())
        };
        let mut got = Vec::new();
        console.write(offset, value, |line| got.push(line.to_vec()));
        let mut want = Vec::new();
        model.write(offset, value, &mut want);
        assert_eq!(got, want, "write of {value:#x} at {offset:#x}");
        for line in &got {
            assert!(line.len() <= LINE);
            assert!(line
                .iter()
                .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b)));
        }
    }
});
