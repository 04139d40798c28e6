//! Just enough ELF64 reading to turn a linked program into the bytes a boot
//! loader would place in memory.

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

const PT_LOAD: u32 = 1;

/// `(lowest physical address, memory image)`: every PT_LOAD segment at its
/// physical address, zero-filled where memsz exceeds filesz (.bss).
pub fn flatten(elf: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let bad = || "not a valid little-endian ELF64 file".to_string();
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(bad());
    }
    let phoff = u64_at(elf, 0x20).ok_or_else(bad)? as usize;
    let phentsize = u16_at(elf, 0x36).ok_or_else(bad)? as usize;
    let phnum = u16_at(elf, 0x38).ok_or_else(bad)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(
            elf.get(ph..ph + 4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        if p_type != PT_LOAD {
            continue;
        }
        let off = u64_at(elf, ph + 8).ok_or_else(bad)? as usize;
        let paddr = u64_at(elf, ph + 24).ok_or_else(bad)?;
        let filesz = u64_at(elf, ph + 32).ok_or_else(bad)? as usize;
        let memsz = u64_at(elf, ph + 40).ok_or_else(bad)?;
        if memsz == 0 {
            continue;
        }
        let data = elf
            .get(off..off + filesz)
            .ok_or_else(|| "segment outside the file".to_string())?;
        segs.push((paddr, memsz, data));
    }
    let base = segs
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or("no loadable segment")?;
    let end = segs
        .iter()
        .map(|s| s.0 + s.1)
        .max()
        .ok_or("no loadable segment")?;
    if end - base > 1 << 30 {
        return Err(format!("loadable segments span {:#x} bytes", end - base));
    }
    let mut img = vec![0u8; (end - base) as usize];
    for (paddr, _, data) in segs {
        let at = (paddr - base) as usize;
        img[at..at + data.len()].copy_from_slice(data);
    }
    Ok((base, img))
}

/// Sizes of the allocated sections, by name, in file order.
pub fn section_sizes(elf: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let bad = || "not a valid little-endian ELF64 file".to_string();
    let shoff = u64_at(elf, 0x28).ok_or_else(bad)? as usize;
    let shentsize = u16_at(elf, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(elf, 0x3c).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(elf, 0x3e).ok_or_else(bad)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(elf, sh(shstrndx) + 0x18).ok_or_else(bad)? as usize;
    let mut out = Vec::new();
    for i in 0..shnum {
        let flags = u64_at(elf, sh(i) + 0x08).ok_or_else(bad)?;
        if flags & 0x2 == 0 {
            continue; // not SHF_ALLOC
        }
        let name_off = u32::from_le_bytes(
            elf.get(sh(i)..sh(i) + 4)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let name = elf.get(strtab + name_off..).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(0)])
            .into_owned();
        out.push((name, u64_at(elf, sh(i) + 0x20).ok_or_else(bad)?));
    }
    Ok(out)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The value (link-time address) of the first symbol of `.symtab` whose
/// (mangled) name contains `part`, e.g. `6domain9start_all` for
/// `bulkhead::domain::start_all`.
pub fn symbol_containing(elf: &[u8], part: &str) -> Option<u64> {
    let shoff = u64_at(elf, 0x28)? as usize;
    let shentsize = u16_at(elf, 0x3a)? as usize;
    let shnum = u16_at(elf, 0x3c)? as usize;
    let sh = |i: usize| shoff + i * shentsize;
    const SHT_SYMTAB: u32 = 2;
    let symtab = (0..shnum).find(|&i| u32_at(elf, sh(i) + 4) == Some(SHT_SYMTAB))?;
    let (off, size, entsize) = (
        u64_at(elf, sh(symtab) + 0x18)? as usize,
        u64_at(elf, sh(symtab) + 0x20)? as usize,
        u64_at(elf, sh(symtab) + 0x38)? as usize,
    );
    let strtab = sh(u32_at(elf, sh(symtab) + 0x28)? as usize);
    let str_off = u64_at(elf, strtab + 0x18)? as usize;
    let needle = part.as_bytes();
    (0..size / entsize.max(1)).find_map(|k| {
        let e = off + k * entsize;
        let name = elf.get(str_off + u32_at(elf, e)? as usize..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        name.windows(needle.len())
            .any(|w| w == needle)
            .then(|| u64_at(elf, e + 8))?
    })
}
