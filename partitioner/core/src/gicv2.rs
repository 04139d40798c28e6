//! GICv2 CPU-interface numbers. A GICv2 names its CPU interfaces by a bit
//! mask (in `GICD_ITARGETSR` targets and the `GICD_SGIR` target list), and
//! the interface a core is wired to need not be the core's board index. Each
//! core finds its own by reading `GICD_ITARGETSR0..7`: the banked, read-only
//! targets of the SGIs and PPIs, every implemented byte of which reads as the
//! reading core's own CPU-interface mask.

/// Why `GICD_ITARGETSR0..7` did not give the reader's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceError {
    /// Every byte read as zero on a GIC with more than one CPU interface
    /// (only a uniprocessor GIC may make them RAZ).
    NoMask,
    /// A byte with other than exactly one bit, or bytes that disagree.
    Inconsistent { byte: u8, other: u8 },
}

impl core::fmt::Display for InterfaceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InterfaceError::NoMask => {
                f.write_str("GICD_ITARGETSR0..7 read as zero on a multiprocessor GIC")
            }
            InterfaceError::Inconsistent { byte, other } => write!(
                f,
                "GICD_ITARGETSR0..7 name no single CPU interface (bytes {:#04x} and {:#04x})",
                u32::from(*byte),
                u32::from(*other)
            ),
        }
    }
}

/// The reading core's CPU-interface mask (one bit) from the eight words of
/// `GICD_ITARGETSR0..7`, on a GIC implementing `interfaces` CPU interfaces
/// (`GICD_TYPER.CPUNumber + 1`). Bytes of unimplemented SGIs/PPIs read as
/// zero and are skipped; a uniprocessor GIC may read all of them as zero,
/// and has only interface 0.
pub fn own_interface_mask(itargetsr: [u32; 8], interfaces: u32) -> Result<u8, InterfaceError> {
    let mut found: Option<u8> = None;
    for byte in itargetsr.iter().flat_map(|w| w.to_le_bytes()) {
        if byte == 0 {
            continue;
        }
        match found {
            _ if byte.count_ones() != 1 => {
                return Err(InterfaceError::Inconsistent {
                    byte,
                    other: found.unwrap_or(byte),
                })
            }
            Some(f) if f != byte => {
                return Err(InterfaceError::Inconsistent {
                    byte: f,
                    other: byte,
                })
            }
            _ => found = Some(byte),
        }
    }
    match found {
        Some(mask) => Ok(mask),
        None if interfaces <= 1 => Ok(1),
        None => Err(InterfaceError::NoMask),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_s_own_mask() {
        // QEMU: core n reads 1 << n in every byte.
        assert_eq!(own_interface_mask([0x0202_0202; 8], 4), Ok(2));
        // A board wiring core 0 to interface 2: the mask, not the core index.
        assert_eq!(own_interface_mask([0x0404_0404; 8], 4), Ok(4));
        // Unimplemented SGIs/PPIs read as zero.
        let mut w = [0u32; 8];
        w[7] = 0x8000_0000u32 | 0x0080_0000;
        assert_eq!(own_interface_mask(w, 8), Ok(0x80));
    }

    #[test]
    fn zero_is_interface_0_only_on_a_uniprocessor_gic() {
        assert_eq!(own_interface_mask([0; 8], 1), Ok(1));
        assert_eq!(own_interface_mask([0; 8], 4), Err(InterfaceError::NoMask));
    }

    #[test]
    fn ambiguous_masks_are_refused() {
        assert_eq!(
            own_interface_mask([0x0303_0303; 8], 4),
            Err(InterfaceError::Inconsistent { byte: 3, other: 3 })
        );
        let mut w = [0x0101_0101u32; 8];
        w[3] = 0x0102_0101;
        assert_eq!(
            own_interface_mask(w, 4),
            Err(InterfaceError::Inconsistent { byte: 1, other: 2 })
        );
        assert!(own_interface_mask(w, 4)
            .unwrap_err()
            .to_string()
            .contains("0x01 and 0x02"));
    }
}
