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

/// One `.symtab` entry: its (mangled) name, value, size and `st_info`.
pub struct Symbol<'a> {
    pub name: &'a [u8],
    pub value: u64,
    pub size: u64,
    pub info: u8,
}

/// Every entry of `.symtab`, in table order; `None` without one or if the
/// file is cut short.
pub fn symbols(elf: &[u8]) -> Option<Vec<Symbol<'_>>> {
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
    (0..size / entsize.max(1))
        .map(|k| {
            let e = off + k * entsize;
            let name = elf.get(str_off + u32_at(elf, e)? as usize..)?;
            Some(Symbol {
                name: &name[..name.iter().position(|&b| b == 0)?],
                info: *elf.get(e + 4)?,
                value: u64_at(elf, e + 8)?,
                size: u64_at(elf, e + 16)?,
            })
        })
        .collect()
}

/// The value (link-time address) of the first symbol of `.symtab` whose
/// (mangled) name contains `part`, e.g. `6domain9start_all` for
/// `bulkhead::domain::start_all`.
pub fn symbol_containing(elf: &[u8], part: &str) -> Option<u64> {
    let needle = part.as_bytes();
    symbols(elf)?
        .into_iter()
        .find(|s| s.name.windows(needle.len()).any(|w| w == needle))
        .map(|s| s.value)
}

/// Bytes of function code (`STT_FUNC` symbols) per module, the largest
/// first: `crate::module` of each function's path (of the type of a trait
/// impl), `crate` for a crate's root, and the name itself for the rest
/// (`memcpy`, the linker's `OUTLINED_FUNCTION_*` as one row).
pub fn code_by_module(elf: &[u8]) -> Option<Vec<(String, u64)>> {
    const STT_FUNC: u8 = 2;
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for s in symbols(elf)? {
        if s.info & 0xf == STT_FUNC && s.size > 0 {
            *by.entry(module_of(&String::from_utf8_lossy(s.name)))
                .or_default() += s.size;
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Some(v)
}

/// The `crate::module` a (legacy- or v0-) mangled Rust symbol belongs to.
pub fn module_of(name: &str) -> String {
    if name.starts_with("OUTLINED_FUNCTION_") {
        return "(outlined code shared by several functions)".into();
    }
    let Some(rest) = name.strip_prefix("_ZN") else {
        return match name.strip_prefix("_R") {
            Some(v0) => v0_crate(v0).unwrap_or_else(|| name.into()),
            None => name.into(),
        };
    };
    // Legacy: <len><ident>... E. A trait impl's first ident is
    // `_$LT$path..to..Type$u20$as$u20$Trait$GT$`: its type's path counts.
    let mut idents = Vec::new();
    let mut r = rest;
    while idents.len() < 2 {
        let digits = r.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = r[..digits].parse::<usize>() else {
            break;
        };
        let Some(ident) = r.get(digits..digits + len) else {
            break;
        };
        if let Some(impl_of) = ident.strip_prefix("_$LT$") {
            let ty = impl_of.split("$u20$").next().unwrap_or(impl_of);
            let ty = ty.split("$LT$").next().unwrap_or(ty);
            let mut path = ty.split("..").filter(|p| !p.is_empty());
            let krate = path.next().unwrap_or(ty).trim_start_matches("$RF$");
            if krate.starts_with(|c: char| c.is_ascii_uppercase()) {
                return "(generic impls on references)".into();
            }
            return match path.next() {
                Some(m) if m.starts_with(|c: char| c.is_ascii_lowercase()) => {
                    format!("{krate}::{m}")
                }
                _ => krate.to_string(),
            };
        }
        idents.push(ident);
        r = &r[digits + len..];
    }
    let hash = |m: &str| {
        m.len() == 17 && m.starts_with('h') && m[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    match idents.as_slice() {
        [k, m] if m.starts_with(|c: char| c.is_ascii_lowercase()) && !hash(m) => {
            format!("{k}::{m}")
        }
        [k, ..] => k.to_string(),
        [] => name.into(),
    }
}

/// The crate of a v0-mangled symbol (after `_R`): the identifier after the
/// first crate root `C` with its disambiguator (`Cs<base62>_<len><name>`).
fn v0_crate(v0: &str) -> Option<String> {
    let at = v0.find("Cs")?;
    let r = &v0[at + 2..];
    let r = &r[r.find('_')? + 1..];
    let digits = r.bytes().take_while(u8::is_ascii_digit).count();
    let len: usize = r[..digits].parse().ok()?;
    Some(r.get(digits..digits + len)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::module_of;

    #[test]
    fn symbols_are_charged_to_their_module() {
        for (mangled, module) in [
            (
                "_ZN13bulkhead_core8validate8Resolver11device_site17h86d88edae31b3f43E",
                "bulkhead_core::validate",
            ),
            ("_ZN8bulkhead9hardening3run17h0123456789abcdefE", "bulkhead::hardening"),
            ("_ZN8bulkhead4main17h0123456789abcdefE", "bulkhead::main"),
            ("_ZN6memcpy17h0123456789abcdefE", "memcpy"),
            (
                "_ZN93_$LT$bulkhead_core..fdt_check..Children$u20$as$u20$core..iter..traits..iterator..Iterator$GT$4next17hd365f755c755b574E",
                "bulkhead_core::fdt_check",
            ),
            (
                "_ZN4core3ptr45drop_in_place$LT$bulkhead..irq..Phys$GT$17h0123456789abcdefE",
                "core::ptr",
            ),
            (
                "_ZN44_$LT$$RF$T$u20$as$u20$core..fmt..Display$GT$3fmt17h120c6c87215f5dc5E",
                "(generic impls on references)",
            ),
            ("_RNvNtCs3g5Gb6bJpu0_4core9panicking18panic_bounds_check", "core"),
            ("_RNvMsa_NtCs3g5Gb6bJpu0_4core3fmtNtB5_9Formatter9write_fmt", "core"),
            ("OUTLINED_FUNCTION_21", "(outlined code shared by several functions)"),
            ("memset", "memset"),
        ] {
            assert_eq!(module_of(mangled), module, "{mangled}");
        }
    }
}
