//! Structural check of an untrusted flattened device tree (FDT) blob, and a
//! small reader over blobs that passed it.
//!
//! [`check`] walks the header, the memory reservation block, the structure
//! block and the strings block of a blob and rejects anything that is not a
//! well-formed, complete FDT (version 17, as `dtc` emits). It never panics and
//! never indexes out of bounds, whatever the input. On success it returns an
//! [`Fdt`], whose [`Node`]s and [`Prop`]s read the blob without further
//! surprises. The reader is itself written with checked accesses only, so even
//! a bug in the checker could not make it panic.
//!
//! A blob accepted here is also safe to hand to the `fdt` crate's tree walk
//! (every token, name and offset it follows has been verified); its helpers
//! that `expect` particular nodes (`/chosen`, `/cpus`, `/memory`) remain the
//! caller's business.

use core::fmt;

/// `magic` of every FDT.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// The FDT version this module reads (and the oldest it accepts).
pub const FDT_VERSION: u32 = 17;
/// Size of the v17 header.
pub const HEADER_SIZE: usize = 40;
/// Deepest node nesting accepted (the root is depth 1).
pub const MAX_DEPTH: usize = 32;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// One of the blocks an FDT header points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Reservations,
    Structure,
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::Reservations => "memory reservation block",
            Block::Structure => "structure block",
            Block::Strings => "strings block",
        })
    }
}

/// Why a blob is not a well-formed FDT. Offsets are byte offsets from the
/// start of the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Shorter than the 40-byte header.
    TooShort {
        len: usize,
    },
    BadMagic {
        magic: u32,
    },
    /// `totalsize` is smaller than the header or larger than the blob.
    BadTotalSize {
        totalsize: u32,
        len: usize,
    },
    /// Not readable as version 17.
    BadVersion {
        version: u32,
        last_comp_version: u32,
    },
    /// A block does not lie inside `totalsize` (or follows the header badly).
    BlockOutOfBounds {
        block: Block,
        offset: u32,
        size: u32,
    },
    /// A block does not start at the alignment the format requires.
    MisalignedBlock {
        block: Block,
        offset: u32,
    },
    /// The structure and strings blocks overlap.
    BlocksOverlap,
    /// The memory reservation list has no terminating empty entry.
    UnterminatedReservations,
    /// A token, or the data it announces, runs past the structure block.
    StructureOverrun {
        offset: usize,
    },
    /// Unknown token, or a token where it may not appear.
    BadToken {
        offset: usize,
        token: u32,
    },
    /// A node name has no NUL terminator inside the structure block.
    UnterminatedNodeName {
        offset: usize,
    },
    /// A node name is not valid (non-UTF-8, empty outside the root, named root).
    BadNodeName {
        offset: usize,
    },
    /// A property name offset points outside the strings block, or at an
    /// unterminated, empty or non-UTF-8 string.
    BadPropertyName {
        offset: usize,
        name_offset: u32,
    },
    /// A property follows a child node inside the same node.
    PropertyAfterChild {
        offset: usize,
    },
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep {
        offset: usize,
    },
    /// The structure block does not start with the root node.
    MissingRoot,
    /// A second top-level node follows the root.
    ExtraRoot {
        offset: usize,
    },
    /// The structure block ends without `FDT_END`, or `FDT_END` comes inside a node.
    MissingEnd {
        offset: usize,
    },
    /// Bytes follow `FDT_END` inside the structure block.
    TrailingData {
        offset: usize,
    },
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FdtError::TooShort { len } => {
                write!(f, "{len} bytes is too short for an FDT header ({HEADER_SIZE} bytes)")
            }
            FdtError::BadMagic { magic } => {
                write!(f, "bad magic {magic:#010x} (expected {FDT_MAGIC:#010x})")
            }
            // u32 values as u64 (the same digits): smaller code in the
            // firmware.
            FdtError::BadTotalSize { totalsize, len } => write!(
                f,
                "header totalsize {} does not fit the {len}-byte blob",
                u64::from(totalsize)
            ),
            FdtError::BadVersion { version, last_comp_version } => write!(
                f,
                "FDT version {} (last compatible {}) is not readable as version {}",
                u64::from(version),
                u64::from(last_comp_version),
                u64::from(FDT_VERSION)
            ),
            FdtError::BlockOutOfBounds { block, offset, size } => write!(
                f,
                "{block} (offset {offset:#x}, size {size:#x}) lies outside the blob"
            ),
            FdtError::MisalignedBlock { block, offset } => {
                write!(f, "{block} offset {offset:#x} is misaligned")
            }
            FdtError::BlocksOverlap => f.write_str("structure and strings blocks overlap"),
            FdtError::UnterminatedReservations => {
                f.write_str("memory reservation block has no terminating entry")
            }
            FdtError::StructureOverrun { offset } => {
                write!(f, "data at offset {offset:#x} runs past the structure block")
            }
            FdtError::BadToken { offset, token } => {
                write!(f, "unexpected token {token:#x} at offset {offset:#x}")
            }
            FdtError::UnterminatedNodeName { offset } => {
                write!(f, "node name at offset {offset:#x} is not terminated")
            }
            FdtError::BadNodeName { offset } => {
                write!(f, "node name at offset {offset:#x} is invalid")
            }
            FdtError::BadPropertyName { offset, name_offset } => write!(
                f,
                "property at offset {offset:#x} has an invalid name (strings offset {name_offset:#x})"
            ),
            FdtError::PropertyAfterChild { offset } => {
                write!(f, "property at offset {offset:#x} follows a child node")
            }
            FdtError::TooDeep { offset } => write!(
                f,
                "node at offset {offset:#x} nests deeper than {MAX_DEPTH} levels"
            ),
            FdtError::MissingRoot => f.write_str("structure block does not start with the root node"),
            FdtError::ExtraRoot { offset } => {
                write!(f, "second top-level node at offset {offset:#x}")
            }
            FdtError::MissingEnd { offset } => {
                write!(f, "structure block ends early (offset {offset:#x}) without FDT_END")
            }
            FdtError::TrailingData { offset } => {
                write!(f, "data follows FDT_END at offset {offset:#x}")
            }
        }
    }
}

/// Big-endian `u32` at `off`, if all four bytes are there.
fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    let bytes: [u8; 4] = buf.get(off..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Big-endian `u64` at `off`, if all eight bytes are there.
fn be64(buf: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    let bytes: [u8; 8] = buf.get(off..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// The NUL-terminated string starting at `off`, without its terminator.
fn cstr(buf: &[u8], off: usize) -> Option<&[u8]> {
    let rest = buf.get(off..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// Name and body offset of the node whose `FDT_BEGIN_NODE` is at `off`.
fn node_header(structure: &[u8], off: usize) -> Option<(&str, usize)> {
    let name_off = off.checked_add(4)?;
    let name = cstr(structure, name_off)?;
    let name = core::str::from_utf8(name).ok()?;
    let body = align4(name_off.checked_add(name.len())?.checked_add(1)?)?;
    Some((name, body))
}

/// Body offset of the node whose `FDT_BEGIN_NODE` is at `off`, its name
/// not decoded (`check` proved every name valid): for skipping nodes.
fn node_body(structure: &[u8], off: usize) -> Option<usize> {
    let name_off = off.checked_add(4)?;
    let len = cstr(structure, name_off)?.len();
    align4(name_off.checked_add(len)?.checked_add(1)?)
}

/// Offset of the next token after the property at `off`, its name not
/// looked up (`check` proved every name valid): for skipping properties.
fn prop_next(structure: &[u8], off: usize) -> Option<usize> {
    let len = usize::try_from(be32(structure, off.checked_add(4)?)?).ok()?;
    let value_end = off.checked_add(12)?.checked_add(len)?;
    if value_end > structure.len() {
        return None;
    }
    align4(value_end)
}

/// Name, value and the offset of the next token for the property at `off`.
fn prop_at<'a>(structure: &'a [u8], strings: &'a [u8], off: usize) -> Option<Prop<'a>> {
    let len = usize::try_from(be32(structure, off.checked_add(4)?)?).ok()?;
    let name_off = usize::try_from(be32(structure, off.checked_add(8)?)?).ok()?;
    let value_start = off.checked_add(12)?;
    let value_end = value_start.checked_add(len)?;
    let value = structure.get(value_start..value_end)?;
    let name = core::str::from_utf8(cstr(strings, name_off)?).ok()?;
    Some(Prop {
        name,
        value,
        next: align4(value_end)?,
    })
}

/// Checks that `blob` is a well-formed, complete FDT and returns a reader over
/// it. Bytes after `totalsize` are ignored.
pub fn check(blob: &[u8]) -> Result<Fdt<'_>, FdtError> {
    let len = blob.len();
    let header = |i: usize| be32(blob, i * 4).ok_or(FdtError::TooShort { len });
    let magic = header(0)?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic { magic });
    }
    if len < HEADER_SIZE {
        return Err(FdtError::TooShort { len });
    }
    let totalsize = header(1)?;
    let off_struct = header(2)?;
    let off_strings = header(3)?;
    let off_rsvmap = header(4)?;
    let version = header(5)?;
    let last_comp_version = header(6)?;
    let size_strings = header(8)?;
    let size_struct = header(9)?;

    let total = usize::try_from(totalsize).unwrap_or(usize::MAX);
    if total < HEADER_SIZE || total > len {
        return Err(FdtError::BadTotalSize { totalsize, len });
    }
    if version < FDT_VERSION || last_comp_version > FDT_VERSION {
        return Err(FdtError::BadVersion {
            version,
            last_comp_version,
        });
    }
    let blob = blob
        .get(..total)
        .ok_or(FdtError::BadTotalSize { totalsize, len })?;

    // A block [offset, offset + size) must follow the header and fit the blob.
    let block = |block: Block, offset: u32, size: u32, align: u32| {
        let oob = FdtError::BlockOutOfBounds {
            block,
            offset,
            size,
        };
        let start = usize::try_from(offset).map_err(|_| oob)?;
        let end = start
            .checked_add(usize::try_from(size).map_err(|_| oob)?)
            .ok_or(oob)?;
        if start < HEADER_SIZE || end > total {
            return Err(oob);
        }
        if !offset.is_multiple_of(align) {
            return Err(FdtError::MisalignedBlock { block, offset });
        }
        Ok(start..end)
    };
    let rsv = block(Block::Reservations, off_rsvmap, 0, 8)?;
    let st = block(Block::Structure, off_struct, size_struct, 4)?;
    let sg = block(Block::Strings, off_strings, size_strings, 1)?;
    if !st.is_empty() && !sg.is_empty() && st.start < sg.end && sg.start < st.end {
        return Err(FdtError::BlocksOverlap);
    }

    // Memory reservations: 16-byte (address, size) entries up to an all-zero one.
    let mut at = rsv.start;
    loop {
        let (Some(addr), Some(size)) = (
            be64(blob, at),
            at.checked_add(8).and_then(|o| be64(blob, o)),
        ) else {
            return Err(FdtError::UnterminatedReservations);
        };
        if addr == 0 && size == 0 {
            break;
        }
        at = at
            .checked_add(16)
            .ok_or(FdtError::UnterminatedReservations)?;
    }

    let structure = blob.get(st.clone()).ok_or(FdtError::BlockOutOfBounds {
        block: Block::Structure,
        offset: off_struct,
        size: size_struct,
    })?;
    let strings = blob.get(sg).ok_or(FdtError::BlockOutOfBounds {
        block: Block::Strings,
        offset: off_strings,
        size: size_strings,
    })?;
    let root_body = walk(structure, strings, st.start)?;
    Ok(Fdt {
        structure,
        strings,
        root_body,
    })
}

/// Walks the structure block token by token; returns the root's body offset.
/// `base` turns block offsets into blob offsets for error reports.
fn walk(structure: &[u8], strings: &[u8], base: usize) -> Result<usize, FdtError> {
    let abs = |off: usize| base.saturating_add(off);
    let mut off = 0usize;
    let mut depth = 0usize;
    let mut root_body = None;
    let mut root_done = false;
    // Whether the node at the current depth has already had a child.
    let mut had_child = [false; MAX_DEPTH + 1];
    loop {
        let Some(token) = be32(structure, off) else {
            return Err(if off >= structure.len() {
                FdtError::MissingEnd { offset: abs(off) }
            } else {
                FdtError::StructureOverrun { offset: abs(off) }
            });
        };
        match token {
            FDT_NOP => off += 4,
            FDT_BEGIN_NODE => {
                if root_done {
                    return Err(FdtError::ExtraRoot { offset: abs(off) });
                }
                let name_off = off + 4;
                let Some(name) = cstr(structure, name_off) else {
                    return Err(FdtError::UnterminatedNodeName {
                        offset: abs(name_off),
                    });
                };
                let valid = core::str::from_utf8(name).is_ok() && (depth == 0) == name.is_empty();
                if !valid {
                    return Err(FdtError::BadNodeName {
                        offset: abs(name_off),
                    });
                }
                let body = name_off
                    .checked_add(name.len() + 1)
                    .and_then(align4)
                    .filter(|&b| b <= structure.len())
                    .ok_or(FdtError::StructureOverrun {
                        offset: abs(name_off),
                    })?;
                if let Some(flag) = had_child.get_mut(depth) {
                    *flag = true;
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(FdtError::TooDeep { offset: abs(off) });
                }
                if let Some(flag) = had_child.get_mut(depth) {
                    *flag = false;
                }
                if depth == 1 {
                    root_body = Some(body);
                }
                off = body;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(FdtError::BadToken {
                        offset: abs(off),
                        token,
                    });
                }
                depth -= 1;
                if depth == 0 {
                    root_done = true;
                }
                off += 4;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(FdtError::BadToken {
                        offset: abs(off),
                        token,
                    });
                }
                if had_child.get(depth).copied().unwrap_or(false) {
                    return Err(FdtError::PropertyAfterChild { offset: abs(off) });
                }
                let overrun = FdtError::StructureOverrun { offset: abs(off) };
                let len = be32(structure, off + 4).ok_or(overrun)?;
                let name_offset = be32(structure, off + 8).ok_or(overrun)?;
                let value_end = usize::try_from(len)
                    .ok()
                    .and_then(|l| (off + 12).checked_add(l))
                    .filter(|&e| e <= structure.len())
                    .ok_or(overrun)?;
                let name = usize::try_from(name_offset)
                    .ok()
                    .and_then(|n| cstr(strings, n))
                    .filter(|n| !n.is_empty())
                    .and_then(|n| core::str::from_utf8(n).ok());
                if name.is_none() {
                    return Err(FdtError::BadPropertyName {
                        offset: abs(off),
                        name_offset,
                    });
                }
                // The padding after the value may be absent only at the very end,
                // where the missing FDT_END is reported next.
                off = align4(value_end).ok_or(overrun)?;
            }
            FDT_END => {
                if depth != 0 {
                    return Err(FdtError::MissingEnd { offset: abs(off) });
                }
                let root_body = root_body.ok_or(FdtError::MissingRoot)?;
                let end = off + 4;
                if end != structure.len() {
                    return Err(FdtError::TrailingData { offset: abs(end) });
                }
                return Ok(root_body);
            }
            _ => {
                return Err(FdtError::BadToken {
                    offset: abs(off),
                    token,
                })
            }
        }
    }
}

/// A checked FDT.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    root_body: usize,
}

impl<'a> Fdt<'a> {
    /// The root node.
    pub fn root(&self) -> Node<'a> {
        Node {
            structure: self.structure,
            strings: self.strings,
            name: "",
            body: self.root_body,
        }
    }

    /// The node at an absolute path such as `/domains/hello` (names compared
    /// exactly, unit address included).
    pub fn find(&self, path: &str) -> Option<Node<'a>> {
        let mut node = self.root();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.child(part)?;
        }
        Some(node)
    }
}

/// A node of a checked FDT.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    name: &'a str,
    /// Offset of the first token after the node's name.
    body: usize,
}

impl<'a> Node<'a> {
    /// Full node name (`name@unit`); empty for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The node's properties, in blob order.
    pub fn props(&self) -> Props<'a> {
        Props {
            structure: self.structure,
            strings: self.strings,
            off: self.body,
        }
    }

    /// The first property called `name` (names compared as bytes; only
    /// that one is decoded).
    pub fn prop(&self, name: &str) -> Option<Prop<'a>> {
        let mut off = self.body;
        loop {
            match be32(self.structure, off)? {
                FDT_NOP => off = off.checked_add(4)?,
                FDT_PROP => {
                    let name_off =
                        usize::try_from(be32(self.structure, off.checked_add(8)?)?).ok()?;
                    if cstr(self.strings, name_off)? == name.as_bytes() {
                        return prop_at(self.structure, self.strings, off);
                    }
                    off = prop_next(self.structure, off)?;
                }
                _ => return None,
            }
        }
    }

    /// The node's children, in blob order.
    #[inline(never)]
    pub fn children(&self) -> Children<'a> {
        Children {
            structure: self.structure,
            strings: self.strings,
            off: Some(self.body),
        }
    }

    /// The first child called exactly `name`.
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        self.children().find(|c| c.name == name)
    }
}

/// Iterator over a node's properties.
#[derive(Clone, Debug)]
pub struct Props<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Props<'a> {
    type Item = Prop<'a>;
    fn next(&mut self) -> Option<Prop<'a>> {
        loop {
            match be32(self.structure, self.off)? {
                FDT_NOP => self.off = self.off.checked_add(4)?,
                FDT_PROP => {
                    let prop = prop_at(self.structure, self.strings, self.off)?;
                    self.off = prop.next;
                    return Some(prop);
                }
                _ => return None,
            }
        }
    }
}

/// Iterator over a node's children.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    /// Next token to look at; `None` once finished.
    off: Option<usize>,
}

impl<'a> Children<'a> {
    /// Offset just past the `FDT_END_NODE` closing the node whose body starts at `body`.
    fn skip_node(&self, mut off: usize) -> Option<usize> {
        let mut depth = 1usize;
        loop {
            match be32(self.structure, off)? {
                FDT_NOP => off = off.checked_add(4)?,
                FDT_PROP => off = prop_next(self.structure, off)?,
                FDT_BEGIN_NODE => {
                    off = node_body(self.structure, off)?;
                    depth = depth.checked_add(1)?;
                }
                FDT_END_NODE => {
                    off = off.checked_add(4)?;
                    depth -= 1;
                    if depth == 0 {
                        return Some(off);
                    }
                }
                _ => return None,
            }
        }
    }

    fn step(&mut self) -> Option<Node<'a>> {
        let mut off = self.off?;
        loop {
            match be32(self.structure, off)? {
                FDT_NOP => off = off.checked_add(4)?,
                FDT_PROP => off = prop_next(self.structure, off)?,
                FDT_BEGIN_NODE => {
                    let (name, body) = node_header(self.structure, off)?;
                    self.off = Some(self.skip_node(body)?);
                    return Some(Node {
                        structure: self.structure,
                        strings: self.strings,
                        name,
                        body,
                    });
                }
                _ => return None,
            }
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;
    fn next(&mut self) -> Option<Node<'a>> {
        let node = self.step();
        if node.is_none() {
            self.off = None;
        }
        node
    }
}

/// A property of a checked FDT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prop<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
    next: usize,
}

impl<'a> Prop<'a> {
    /// The value as one NUL-terminated UTF-8 string (no embedded NULs).
    pub fn as_str(&self) -> Option<&'a str> {
        let (last, text) = self.value.split_last()?;
        if *last != 0 || text.contains(&0) {
            return None;
        }
        core::str::from_utf8(text).ok()
    }

    /// The value as a list of NUL-terminated UTF-8 strings (at least one).
    pub fn as_str_list(&self) -> Option<StrList<'a>> {
        let (last, _) = self.value.split_last()?;
        if *last != 0 || core::str::from_utf8(self.value).is_err() {
            return None;
        }
        Some(StrList { rest: self.value })
    }

    /// The value as one 32-bit cell.
    pub fn as_u32(&self) -> Option<u32> {
        if self.value.len() != 4 {
            return None;
        }
        be32(self.value, 0)
    }

    /// The value as two cells forming one 64-bit number.
    pub fn as_u64(&self) -> Option<u64> {
        if self.value.len() != 8 {
            return None;
        }
        be64(self.value, 0)
    }

    /// The value as a list of 32-bit cells.
    pub fn as_cells(&self) -> Option<Cells<'a>> {
        if !self.value.len().is_multiple_of(4) {
            return None;
        }
        Some(Cells { rest: self.value })
    }

    /// Number of whole 32-bit cells in the value.
    pub fn cell_count(&self) -> usize {
        self.value.len() / 4
    }
}

/// Iterator over the strings of a string-list property.
#[derive(Clone, Debug)]
pub struct StrList<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for StrList<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = cstr(self.rest, 0)?;
        self.rest = self.rest.get(s.len() + 1..).unwrap_or_default();
        core::str::from_utf8(s).ok()
    }
}

/// Iterator over the cells of a property.
#[derive(Clone, Debug)]
pub struct Cells<'a> {
    rest: &'a [u8],
}

impl Iterator for Cells<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        let cell = be32(self.rest, 0)?;
        self.rest = self.rest.get(4..).unwrap_or_default();
        Some(cell)
    }
}

/// A tiny FDT writer for tests: build a tree fluently, then [`builder::Node::blob`].
#[cfg(test)]
pub(crate) mod builder {
    use std::string::{String, ToString};
    use std::vec::Vec;

    #[derive(Clone, Debug)]
    pub struct Node {
        pub name: String,
        pub props: Vec<(String, Vec<u8>)>,
        pub children: Vec<Node>,
    }

    pub fn node(name: &str) -> Node {
        Node {
            name: name.to_string(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }

    impl Node {
        /// Sets (replaces or appends) a raw property.
        pub fn raw(mut self, name: &str, value: &[u8]) -> Self {
            match self.props.iter_mut().find(|(n, _)| n == name) {
                Some(p) => p.1 = value.to_vec(),
                None => self.props.push((name.to_string(), value.to_vec())),
            }
            self
        }
        /// Appends a property even if one with that name exists.
        pub fn raw_dup(mut self, name: &str, value: &[u8]) -> Self {
            self.props.push((name.to_string(), value.to_vec()));
            self
        }
        pub fn str(self, name: &str, value: &str) -> Self {
            let mut v = value.as_bytes().to_vec();
            v.push(0);
            self.raw(name, &v)
        }
        pub fn cells(self, name: &str, cells: &[u32]) -> Self {
            let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.raw(name, &v)
        }
        pub fn u64(self, name: &str, value: u64) -> Self {
            self.cells(name, &[(value >> 32) as u32, value as u32])
        }
        pub fn flag(self, name: &str) -> Self {
            self.raw(name, &[])
        }
        pub fn without(mut self, name: &str) -> Self {
            self.props.retain(|(n, _)| n != name);
            self
        }
        pub fn child(mut self, child: Node) -> Self {
            self.children.push(child);
            self
        }
        /// Removes the child at a relative path (`a/b`).
        pub fn remove(self, path: &str) -> Self {
            let (parent, leaf) = match path.rsplit_once('/') {
                Some((p, l)) => (Some(p), l),
                None => (None, path),
            };
            let leaf = leaf.to_string();
            let drop = move |mut n: Node| {
                n.children.retain(|c| c.name != leaf);
                n
            };
            match parent {
                Some(p) => self.at(p, drop),
                None => drop(self),
            }
        }
        /// Applies `f` to the descendant at a relative path (`a/b`); panics if absent.
        pub fn at(mut self, path: &str, f: impl FnOnce(Node) -> Node) -> Self {
            let (first, rest) = match path.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (path, None),
            };
            let i = self
                .children
                .iter()
                .position(|c| c.name == first)
                .unwrap_or_else(|| panic!("no node {first} under {}", self.name));
            let c = self.children.remove(i);
            let c = match rest {
                Some(rest) => c.at(rest, f),
                None => f(c),
            };
            self.children.insert(i, c);
            self
        }

        fn emit(&self, st: &mut Vec<u8>, strings: &mut Vec<u8>) {
            st.extend(1u32.to_be_bytes());
            st.extend(self.name.as_bytes());
            st.push(0);
            while !st.len().is_multiple_of(4) {
                st.push(0);
            }
            for (name, value) in &self.props {
                let off = find_or_add(strings, name);
                st.extend(3u32.to_be_bytes());
                st.extend((value.len() as u32).to_be_bytes());
                st.extend(off.to_be_bytes());
                st.extend(value);
                while !st.len().is_multiple_of(4) {
                    st.push(0);
                }
            }
            for c in &self.children {
                c.emit(st, strings);
            }
            st.extend(2u32.to_be_bytes());
        }

        /// Serializes the tree (this node is the root; its name should be "").
        pub fn blob(&self) -> Vec<u8> {
            let mut st = Vec::new();
            let mut strings = Vec::new();
            self.emit(&mut st, &mut strings);
            st.extend(9u32.to_be_bytes());
            let off_rsv = 40u32;
            let off_st = off_rsv + 16;
            let off_str = off_st + st.len() as u32;
            let total = off_str + strings.len() as u32;
            let mut b = Vec::new();
            for w in [
                0xd00d_feed,
                total,
                off_st,
                off_str,
                off_rsv,
                17,
                16,
                0,
                strings.len() as u32,
                st.len() as u32,
            ] {
                b.extend(u32::to_be_bytes(w));
            }
            b.extend([0u8; 16]);
            b.extend(st);
            b.extend(strings);
            b
        }
    }

    fn find_or_add(strings: &mut Vec<u8>, name: &str) -> u32 {
        let mut at = 0;
        for s in strings.split(|&b| b == 0) {
            if s == name.as_bytes() && at < strings.len() {
                return at as u32;
            }
            at += s.len() + 1;
        }
        let off = strings.len() as u32;
        strings.extend(name.as_bytes());
        strings.push(0);
        off
    }
}

#[cfg(test)]
mod tests {
    use super::builder::node;
    use super::*;
    use std::vec::Vec;

    fn sample() -> Vec<u8> {
        node("")
            .str("compatible", "x,y")
            .cells("list", &[1, 2, 3])
            .child(
                node("a")
                    .u64("big", 0x1_0000_0002)
                    .child(node("deep").flag("f")),
            )
            .child(node("b@10").raw("s", b"one\0two\0"))
            .blob()
    }

    fn word(b: &[u8], off: usize) -> u32 {
        be32(b, off).unwrap()
    }

    fn set(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_be_bytes());
    }

    const OFF_STRUCT: usize = 8;
    const OFF_STRINGS: usize = 12;
    const OFF_RSV: usize = 16;
    const VERSION: usize = 20;
    const SIZE_STRINGS: usize = 32;
    const SIZE_STRUCT: usize = 36;

    #[test]
    fn reads_a_valid_tree() {
        let b = sample();
        let fdt = check(&b).unwrap();
        let root = fdt.root();
        assert_eq!(root.name(), "");
        assert_eq!(root.prop("compatible").unwrap().as_str(), Some("x,y"));
        assert_eq!(
            root.prop("list")
                .unwrap()
                .as_cells()
                .unwrap()
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(root.prop("list").unwrap().as_u64(), None);
        let names: Vec<_> = root.children().map(|c| c.name()).collect();
        assert_eq!(names, ["a", "b@10"]);
        let a = fdt.find("/a").unwrap();
        assert_eq!(a.prop("big").unwrap().as_u64(), Some(0x1_0000_0002));
        assert_eq!(a.prop("big").unwrap().as_u32(), None);
        assert!(fdt
            .find("/a/deep")
            .unwrap()
            .prop("f")
            .unwrap()
            .value
            .is_empty());
        let s = fdt.find("/b@10").unwrap().prop("s").unwrap();
        assert_eq!(s.as_str(), None, "two strings are not one");
        assert_eq!(s.as_str_list().unwrap().collect::<Vec<_>>(), ["one", "two"]);
        assert!(fdt.find("/b").is_none());
        assert!(fdt.find("/a/nope").is_none());
        // The fdt crate agrees on the checked blob.
        let other = fdt::Fdt::new(&b).unwrap();
        assert_eq!(other.find_node("/a/deep").unwrap().name, "deep");
    }

    #[test]
    fn accepts_dtc_output_and_extra_bytes_after_totalsize() {
        let mut b = sample();
        b.extend([0xff; 64]);
        assert!(check(&b).is_ok());
    }

    #[test]
    fn header_errors() {
        let b = sample();
        assert_eq!(check(&[]).unwrap_err(), FdtError::TooShort { len: 0 });
        assert_eq!(check(&b[..39]).unwrap_err(), FdtError::TooShort { len: 39 });
        let mut m = b.clone();
        m[0] = 0;
        assert_eq!(
            check(&m).unwrap_err(),
            FdtError::BadMagic { magic: 0x000d_feed }
        );
        assert!(matches!(
            check(&b[..b.len() - 1]).unwrap_err(),
            FdtError::BadTotalSize { .. }
        ));
        let mut m = b.clone();
        set(&mut m, 4, 12);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadTotalSize { .. }
        ));
        let mut m = b.clone();
        set(&mut m, VERSION, 16);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadVersion { .. }
        ));
        let mut m = b.clone();
        set(&mut m, VERSION + 4, 18);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadVersion { .. }
        ));
    }

    #[test]
    fn block_errors() {
        let b = sample();
        let mut m = b.clone();
        set(&mut m, OFF_STRUCT, 0xffff_fff0);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BlockOutOfBounds {
                block: Block::Structure,
                ..
            }
        ));
        let mut m = b.clone();
        set(&mut m, SIZE_STRINGS, 0xffff_ffff);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BlockOutOfBounds {
                block: Block::Strings,
                ..
            }
        ));
        let mut m = b.clone();
        set(&mut m, OFF_RSV, 8);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BlockOutOfBounds {
                block: Block::Reservations,
                ..
            }
        ));
        let mut m = b.clone();
        set(&mut m, OFF_RSV, 44);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::MisalignedBlock {
                block: Block::Reservations,
                ..
            }
        ));
        let mut m = b.clone();
        let s = word(&m, OFF_STRUCT);
        set(&mut m, OFF_STRUCT, s + 2);
        set(&mut m, SIZE_STRUCT, word(&b, SIZE_STRUCT) - 4);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::MisalignedBlock {
                block: Block::Structure,
                ..
            }
        ));
        let mut m = b.clone();
        set(&mut m, OFF_STRINGS, word(&b, OFF_STRUCT));
        assert_eq!(check(&m).unwrap_err(), FdtError::BlocksOverlap);
        // Reservation list without terminator: fill the rest of the blob.
        let mut m = b.clone();
        for byte in &mut m[40..] {
            *byte = 0xff;
        }
        assert_eq!(check(&m).unwrap_err(), FdtError::UnterminatedReservations);
    }

    #[test]
    fn structure_errors() {
        let b = sample();
        let st = word(&b, OFF_STRUCT) as usize;
        let st_size = word(&b, SIZE_STRUCT) as usize;
        // Root BEGIN_NODE at st, empty name at st+4, first PROP at st+8.
        let prop = st + 8;
        assert_eq!(word(&b, prop), FDT_PROP);

        let mut m = b.clone();
        set(&mut m, prop, 7);
        assert_eq!(
            check(&m).unwrap_err(),
            FdtError::BadToken {
                offset: prop,
                token: 7
            }
        );

        let mut m = b.clone();
        set(&mut m, st, FDT_PROP);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadToken {
                token: FDT_PROP,
                ..
            }
        ));

        let mut m = b.clone();
        set(&mut m, st, FDT_END);
        assert_eq!(check(&m).unwrap_err(), FdtError::MissingRoot);

        let mut m = b.clone();
        set(&mut m, prop + 8, 0x1000);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadPropertyName { .. }
        ));

        let mut m = b.clone();
        set(&mut m, prop + 4, 0x7fff_ffff);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::StructureOverrun { .. }
        ));

        // Drop FDT_END from the structure block.
        let mut m = b.clone();
        set(&mut m, SIZE_STRUCT, (st_size - 4) as u32);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::MissingEnd { .. }
        ));

        // FDT_END inside the root: turn the root's END_NODE into FDT_END.
        let mut m = b.clone();
        set(&mut m, st + st_size - 8, FDT_END);
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::MissingEnd { .. }
        ));

        // A NOP after FDT_END, still inside the structure block.
        let mut m = b.clone();
        set(&mut m, st + st_size - 4, FDT_NOP);
        set(&mut m, SIZE_STRUCT, (st_size + 4) as u32);
        // (The strings block now starts inside the structure block.)
        assert_eq!(check(&m).unwrap_err(), FdtError::BlocksOverlap);

        // A node name running to the end of the structure block.
        let t = node("").child(node("abc")).blob();
        let tst = word(&t, OFF_STRUCT) as usize;
        let mut m = t.clone();
        let tsize = word(&t, SIZE_STRUCT) as usize;
        for byte in &mut m[tst + 12..tst + tsize] {
            *byte = b'x';
        }
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::UnterminatedNodeName { .. }
        ));

        // Non-UTF-8 node name.
        let mut m = t.clone();
        m[tst + 12] = 0xff;
        assert!(matches!(
            check(&m).unwrap_err(),
            FdtError::BadNodeName { .. }
        ));
        // Named root.
        let n = node("root").blob();
        assert!(matches!(
            check(&n).unwrap_err(),
            FdtError::BadNodeName { .. }
        ));
        // Empty child name.
        let n = node("").child(node("")).blob();
        assert!(matches!(
            check(&n).unwrap_err(),
            FdtError::BadNodeName { .. }
        ));
    }

    /// Builds a structure block by hand (strings block: "p\0").
    fn raw(tokens: &[u32]) -> Vec<u8> {
        let st: Vec<u8> = tokens.iter().flat_map(|t| t.to_be_bytes()).collect();
        let strings = b"p\0";
        let off_st = 56u32;
        let off_str = off_st + st.len() as u32;
        let total = off_str + strings.len() as u32;
        let mut b = Vec::new();
        for w in [
            FDT_MAGIC,
            total,
            off_st,
            off_str,
            40,
            17,
            16,
            0,
            2,
            st.len() as u32,
        ] {
            b.extend(w.to_be_bytes());
        }
        b.extend([0u8; 16]);
        b.extend(st);
        b.extend(strings);
        b
    }

    #[test]
    fn token_sequence_errors() {
        const B: u32 = FDT_BEGIN_NODE;
        const E: u32 = FDT_END_NODE;
        const P: u32 = FDT_PROP;
        const N: u32 = FDT_NOP;
        const X: u32 = FDT_END;
        let name_a = u32::from_be_bytes(*b"a\0\0\0");
        assert!(check(&raw(&[N, B, 0, N, P, 0, 0, B, name_a, E, N, E, N, X])).is_ok());
        assert!(matches!(
            check(&raw(&[B, 0, B, name_a, E, P, 0, 0, E, X])).unwrap_err(),
            FdtError::PropertyAfterChild { .. }
        ));
        assert!(matches!(
            check(&raw(&[B, 0, E, B, 0, E, X])).unwrap_err(),
            FdtError::ExtraRoot { .. }
        ));
        assert!(matches!(
            check(&raw(&[E, X])).unwrap_err(),
            FdtError::BadToken { token: E, .. }
        ));
        assert!(matches!(
            check(&raw(&[B, 0, E, X, N])).unwrap_err(),
            FdtError::TrailingData { .. }
        ));
        assert!(matches!(
            check(&raw(&[X])).unwrap_err(),
            FdtError::MissingRoot
        ));
        assert!(matches!(
            check(&raw(&[])).unwrap_err(),
            FdtError::MissingEnd { .. }
        ));
        assert!(matches!(
            check(&raw(&[B, 0, E])).unwrap_err(),
            FdtError::MissingEnd { .. }
        ));
        // Property name offset points into the middle of nothing / an empty name.
        assert!(matches!(
            check(&raw(&[B, 0, P, 0, 1, E, X])).unwrap_err(),
            FdtError::BadPropertyName { .. }
        ));
        // Property announcing more bytes than the block has.
        assert!(matches!(
            check(&raw(&[B, 0, P, 12, 0, E, X])).unwrap_err(),
            FdtError::StructureOverrun { .. }
        ));
        // A token cut in half.
        let mut b = raw(&[B, 0, E, X]);
        let len = b.len();
        b.truncate(len - 2); // drop the strings' last bytes
        let _ = check(&b);
        // Nesting limit.
        let mut deep = std::vec![B, 0];
        for _ in 0..MAX_DEPTH {
            deep.extend([B, name_a]);
        }
        deep.extend(std::iter::repeat_n(E, MAX_DEPTH + 1));
        deep.push(X);
        assert!(matches!(
            check(&raw(&deep)).unwrap_err(),
            FdtError::TooDeep { .. }
        ));
        let ok_depth = MAX_DEPTH - 1;
        let mut fine = std::vec![B, 0];
        for _ in 0..ok_depth {
            fine.extend([B, name_a]);
        }
        fine.extend(std::iter::repeat_n(E, ok_depth + 1));
        fine.push(X);
        assert!(check(&raw(&fine)).is_ok());
    }

    #[test]
    fn errors_display_on_one_line() {
        let errs = [
            FdtError::TooShort { len: 3 },
            FdtError::BadMagic { magic: 1 },
            FdtError::BlockOutOfBounds {
                block: Block::Strings,
                offset: 1,
                size: 2,
            },
            FdtError::StructureOverrun { offset: 9 },
        ];
        for e in errs {
            let s = std::format!("{e}");
            assert!(!s.is_empty() && !s.contains('\n'), "{s}");
        }
    }
}
