//! Exit statistics: why a domain's cores came to EL2, counted per cause.
//!
//! The firmware keeps one slot per cause and physical core, written only by
//! that core (a plain load and store, no atomic read-modify-write, no lock),
//! and adds up a domain's cores only when it prints them: on the partitioner
//! console when the operator types the key sequence ([`Keys`]), and once when
//! the domain stops. The printed form ([`Counts`]'s `Display`) is
//! `irq=N sgi=N vgic=N vconsole=N vecam=N sysreg=N psci=N fault=N maintenance=N wfx=N other=N total=N`.

use core::fmt;

/// Why a domain's core exited to EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cause {
    /// A physical interrupt taken for the domain: its timer, its SPIs, the
    /// partitioner's kick SGI (which brings it queued virtual interrupts,
    /// such as SGIs from its other vCPUs, or a stop request).
    Irq,
    /// An SGI a vCPU sends to its domain's vCPUs (an IPI): a GICv3
    /// `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` or `ICC_SGI0R_EL1` write, a GICv2
    /// `GICD_SGIR` write. Interrupt injection's sending side: without
    /// GICv4.1 virtual SGIs a guest cannot raise one without EL2.
    Sgi,
    /// An emulated virtual GIC distributor or redistributor access.
    Vgic,
    /// An access to the virtual console.
    Vconsole,
    /// An access to the virtual PCIe configuration window (ECAM).
    Vecam,
    /// A trapped system register or instruction other than an SGI: set/way
    /// cache maintenance, anything else trapped (ignored, reads as zero).
    Sysreg,
    /// A PSCI or SMCCC call (HVC or SMC).
    Psci,
    /// A stage-2 fault: an access outside the domain.
    Fault,
    /// The virtual GIC's maintenance interrupt (list registers ran low, or
    /// an EOI the partitioner must complete).
    Maintenance,
    /// A trapped WFI or WFE (never trapped at present: always 0).
    Wfx,
    /// Anything else: the partitioner's own console input taken on the
    /// domain's core, a spurious interrupt, an SError, an unexpected
    /// exception.
    Other,
}

/// Number of causes.
pub const CAUSES: usize = 11;

impl Cause {
    pub const ALL: [Cause; CAUSES] = [
        Cause::Irq,
        Cause::Sgi,
        Cause::Vgic,
        Cause::Vconsole,
        Cause::Vecam,
        Cause::Sysreg,
        Cause::Psci,
        Cause::Fault,
        Cause::Maintenance,
        Cause::Wfx,
        Cause::Other,
    ];

    /// The name in the printed line.
    pub const fn name(self) -> &'static str {
        match self {
            Cause::Irq => "irq",
            Cause::Sgi => "sgi",
            Cause::Vgic => "vgic",
            Cause::Vconsole => "vconsole",
            Cause::Vecam => "vecam",
            Cause::Sysreg => "sysreg",
            Cause::Psci => "psci",
            Cause::Fault => "fault",
            Cause::Maintenance => "maintenance",
            Cause::Wfx => "wfx",
            Cause::Other => "other",
        }
    }

    /// Index of this cause's slot.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Exit counts by cause (a domain's: the sum of its cores' slots).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; CAUSES]);

impl Counts {
    /// Add one core's slots.
    pub fn add(&mut self, slots: &[u64; CAUSES]) {
        for (c, s) in self.0.iter_mut().zip(slots) {
            *c = c.wrapping_add(*s);
        }
    }

    pub fn get(&self, cause: Cause) -> u64 {
        self.0[cause.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, &c| a.wrapping_add(c))
    }

    /// Parse what `Display` printed (the tests' and the bench's reading).
    pub fn parse(text: &str) -> Option<Counts> {
        let mut c = Counts::default();
        let mut fields = text.split_whitespace();
        for cause in Cause::ALL {
            let (name, n) = fields.next()?.split_once('=')?;
            if name != cause.name() {
                return None;
            }
            c.0[cause.index()] = n.parse().ok()?;
        }
        let (name, n) = fields.next()?.split_once('=')?;
        (name == "total" && n.parse::<u64>().ok()? == c.total() && fields.next().is_none())
            .then_some(c)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for cause in Cause::ALL {
            write!(f, "{}={} ", cause.name(), self.get(cause))?;
        }
        write!(f, "total={}", self.total())
    }
}

/// The partitioner console's escape key: Ctrl-a (as in `screen` and
/// QEMU's own character devices), followed by a command key.
pub const ESCAPE: u8 = 0x01;
/// `Ctrl-a s`: show every domain's exit counts.
pub const KEY_STATS: u8 = b's';

/// What a key sequence typed on the partitioner console asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print every domain's exit counts (`Ctrl-a s`).
    ShowExits,
    /// Give the console's input to the next domain with a virtual console,
    /// or to nobody after the last one (`Ctrl-a` three times in a row).
    SwitchFocus,
}

/// One result of feeding a typed byte to [`Keys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A command for the partitioner.
    Command(Command),
    /// A byte for the domain that has the input focus.
    Input(u8),
}

/// How many `Ctrl-a` in a row switch the input focus (as in Xen).
pub const SWITCH_PRESSES: u8 = 3;

/// The partitioner console's input. `Ctrl-a` is the escape key:
///
/// - `Ctrl-a s` (or `S`): [`Command::ShowExits`];
/// - `Ctrl-a` three times in a row: [`Command::SwitchFocus`];
/// - `Ctrl-a` then any other key: that key alone, for the focused domain
///   (the `Ctrl-a` is swallowed);
/// - `Ctrl-a Ctrl-a` then any other key: a literal `Ctrl-a` and that key,
///   for the focused domain (how to type a `Ctrl-a` to a domain);
/// - every other byte: input for the focused domain.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keys {
    /// `Ctrl-a`s typed in a row so far (0 to 2).
    escapes: u8,
}

impl Keys {
    pub const fn new() -> Self {
        Keys { escapes: 0 }
    }

    /// Feed one received byte; `out` gets what it completes, in order.
    pub fn feed(&mut self, b: u8, mut out: impl FnMut(Key)) {
        if b == ESCAPE {
            self.escapes += 1;
            if self.escapes == SWITCH_PRESSES {
                self.escapes = 0;
                out(Key::Command(Command::SwitchFocus));
            }
            return;
        }
        let escapes = core::mem::take(&mut self.escapes);
        match (escapes, b) {
            (1, KEY_STATS | b'S') => out(Key::Command(Command::ShowExits)),
            (2, _) => {
                out(Key::Input(ESCAPE));
                out(Key::Input(b));
            }
            _ => out(Key::Input(b)),
        }
    }
}

/// Who gets the console's input after a switch from `current` (a domain
/// index, or `None` for nobody, the partitioner): the next domain after it
/// that has a virtual console (`has_console[i]`), or nobody after the last
/// one, and from nobody the first such domain again. With no virtual
/// console at all, always nobody.
pub fn next_focus(current: Option<usize>, has_console: &[bool]) -> Option<usize> {
    let from = current.map_or(0, |c| c + 1);
    (from..has_console.len()).find(|&i| has_console[i])
}

/// The input focus at boot: the first domain with a virtual console.
pub fn initial_focus(has_console: &[bool]) -> Option<usize> {
    next_focus(None, has_console)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_every_cause_in_order_with_the_total() {
        let mut c = Counts::default();
        c.add(&[1, 11, 2, 3, 8, 4, 5, 6, 7, 0, 9]);
        c.add(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            format!("{c}"),
            "irq=2 sgi=12 vgic=2 vconsole=3 vecam=8 sysreg=4 psci=5 fault=6 maintenance=7 wfx=0 other=10 total=59"
        );
        assert_eq!(Counts::parse(&format!("{c}")), Some(c));
        assert_eq!(c.get(Cause::Psci), 5);
    }

    #[test]
    fn slots_follow_the_order_of_all() {
        for (i, c) in Cause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn parse_rejects_a_wrong_total_or_order() {
        assert!(Counts::parse(
            "irq=1 sgi=0 vgic=0 vconsole=0 vecam=0 sysreg=0 psci=0 fault=0 maintenance=0 wfx=0 other=0 total=2"
        )
        .is_none());
        assert!(Counts::parse(
            "sgi=0 irq=1 vgic=0 vconsole=0 vecam=0 sysreg=0 psci=0 fault=0 maintenance=0 wfx=0 other=0 total=1"
        )
        .is_none());
    }

    fn keys(typed: &[u8]) -> Vec<Key> {
        let mut k = Keys::new();
        let mut got = Vec::new();
        for &b in typed {
            k.feed(b, |x| got.push(x));
        }
        got
    }

    #[test]
    fn ctrl_a_then_s_asks_for_the_counts() {
        let got: Vec<_> = keys(b"s\x01s\x01xs\x01\x01s\x01S")
            .into_iter()
            .filter_map(|k| match k {
                Key::Command(c) => Some(c),
                Key::Input(_) => None,
            })
            .collect();
        // `s` alone, `Ctrl-a x s` and `Ctrl-a Ctrl-a s` ask for nothing.
        assert_eq!(got, [Command::ShowExits, Command::ShowExits]);
    }

    #[test]
    fn three_ctrl_a_switch_and_the_rest_is_input() {
        use Key::*;
        assert_eq!(
            keys(b"ab\x01\x01\x01c"),
            [
                Input(b'a'),
                Input(b'b'),
                Command(self::Command::SwitchFocus),
                Input(b'c')
            ]
        );
        // Six in a row: two switches; Ctrl-a x: just x; Ctrl-a Ctrl-a x: a
        // literal Ctrl-a and x; Ctrl-a s is not input.
        assert_eq!(
            keys(b"\x01\x01\x01\x01\x01\x01\x01x\x01\x01y\x01s\r"),
            [
                Command(self::Command::SwitchFocus),
                Command(self::Command::SwitchFocus),
                Input(b'x'),
                Input(ESCAPE),
                Input(b'y'),
                Command(self::Command::ShowExits),
                Input(b'\r'),
            ]
        );
        // Plain text passes through untouched, control characters included.
        assert_eq!(keys(b"ls\t\x03\r\n"), b"ls\t\x03\r\n".map(Input).to_vec());
    }

    #[test]
    fn focus_cycles_through_virtual_consoles_then_nobody() {
        let has = [false, true, false, true];
        assert_eq!(initial_focus(&has), Some(1));
        assert_eq!(next_focus(Some(1), &has), Some(3));
        assert_eq!(next_focus(Some(3), &has), None, "then the partitioner");
        assert_eq!(next_focus(None, &has), Some(1), "and around again");
        assert_eq!(next_focus(Some(0), &has), Some(1));
        assert_eq!(initial_focus(&[false, false]), None);
        assert_eq!(next_focus(None, &[false, false]), None);
        assert_eq!(next_focus(None, &[]), None);
        assert_eq!(next_focus(Some(7), &has), None, "out of range: nobody");
    }

    #[test]
    fn counts_wrap_instead_of_overflowing() {
        let mut c = Counts::default();
        c.add(&[u64::MAX, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        c.add(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.get(Cause::Irq), 1);
    }
}
