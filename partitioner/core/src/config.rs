//! Reading a configuration blob: the `bulkhead,config-v1` device-tree binding
//! (documented in `docs/config.md`).
//!
//! [`parse`] turns a compiled config into a [`Config`]: every property read and
//! shape-checked (cell counts, strings, known names), but nothing checked
//! against a board yet. That is [`crate::validate`]'s job, which builds on this
//! module and reports both kinds of errors together.
//!
//! Items with a malformed or missing property are reported and left out of the
//! [`Config`]; the `*_complete` flags say so, letting the validator skip checks
//! that would only repeat the same mistake (such as "no RAM" for a domain whose
//! only region was malformed).

use crate::error::{bounded, path, Error, Errors, Limit, Path, Site};
use crate::fdt_check::{self, Node, Prop};
use crate::plan::{
    FaultPolicy, MAX_CPUS, MAX_DEVICES, MAX_DOMAINS, MAX_IRQS, MAX_NAME, MAX_REGIONS,
};
use heapless::Vec;

/// `compatible` of the root node.
pub const CONFIG_COMPATIBLE: &str = "bulkhead,config-v1";
/// `compatible` of every domain node.
pub const DOMAIN_COMPATIBLE: &str = "bulkhead,domain";
/// Longest `bootargs`, in bytes.
pub const MAX_BOOTARGS: usize = 127;
/// Longest device `compatible`, in bytes.
pub const MAX_COMPATIBLE: usize = 64;

/// Properties accepted (and ignored) on every node: `dtc` adds them for labels.
const IGNORED: &[&str] = &["phandle", "linux,phandle"];

/// A parsed (not yet validated) configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<'b> {
    /// `board` of the root node.
    pub board: &'b str,
    /// The domains, in config order (at most [`MAX_DOMAINS`]).
    pub domains: Vec<DomainConfig<'b>, MAX_DOMAINS>,
}

/// The console a domain asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Mediated: lines written to the virtual PL011 appear, tagged, on the
    /// partitioner's console.
    Virtual,
    /// No console.
    None,
}

/// One domain node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig<'b> {
    /// Node name under `/domains`.
    pub name: &'b str,
    /// `cpus`; `None` when missing, malformed or too long (reported).
    pub cpus: Option<Vec<u32, MAX_CPUS>>,
    /// `image`; `None` when missing or malformed (reported).
    pub image: Option<&'b str>,
    /// `initrd`: an initial RAM disk handed to a Linux kernel; optional.
    pub initrd: Option<&'b str>,
    /// `device-tree`: a hand-written device tree (compiled `.dtb`, or `.dts`
    /// compiled at build time) given to the domain instead of the generated
    /// one; checked against the domain's resources. Optional.
    pub device_tree: Option<&'b str>,
    /// `entry`; `None` when missing or malformed (reported).
    pub entry: Option<u64>,
    /// `bootargs`, empty when absent.
    pub bootargs: &'b str,
    /// `fault-policy`, default [`FaultPolicy::InjectAbort`].
    pub fault_policy: FaultPolicy,
    /// `restart-limit`: restarts allowed before the domain is stopped for
    /// good, default [`crate::plan::RESTART_LIMIT`].
    pub restart_limit: u32,
    /// `console`; `None` when absent (the validator picks the default).
    pub console: Option<Console>,
    /// The well-formed regions under `memory`, in config order.
    pub regions: Vec<RegionConfig<'b>, MAX_REGIONS>,
    /// False when some region was left out because of an error.
    pub regions_complete: bool,
    /// The well-formed devices under `devices`, in config order.
    pub devices: Vec<DeviceConfig<'b>, MAX_DEVICES>,
    /// False when some device was left out because of an error.
    pub devices_complete: bool,
}

/// Where a memory region lives in physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `physical-address`.
    Fixed(u64),
    /// `identity`: physical address = guest address.
    Identity,
    /// Neither: the validator allocates it from free board RAM.
    Anywhere,
}

/// One node under a domain's `memory` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionConfig<'b> {
    pub name: &'b str,
    /// `guest-address`.
    pub guest: u64,
    pub size: u64,
    pub placement: Placement,
}

/// What a passthrough device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSource<'b> {
    /// `board-device`: a device of the board, by name.
    Board(&'b str),
    /// `pci-function`: a function on the board's PCI Express host bridge, by
    /// its address; its BARs are placed at boot, those listed in `bars`
    /// (in config order, each index once) where the config says.
    Pci(
        crate::pci::Bdf,
        Vec<crate::pci::FixedBar, { crate::pci::MAX_FIXED_BARS }>,
    ),
    /// Given explicitly.
    Explicit {
        /// `physical-address`.
        pa: u64,
        size: u64,
        /// `spis` (empty when absent).
        spis: Vec<u32, MAX_IRQS>,
        /// `compatible`; `None` takes the one of the board device holding the range.
        compatible: Option<&'b str>,
    },
}

/// One node under a domain's `devices` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig<'b> {
    pub name: &'b str,
    /// `guest-address`; `None`: mapped at its physical address.
    pub guest: Option<u64>,
    pub source: DeviceSource<'b>,
    /// `dma = "unprotected"`: the config accepts that this device masters
    /// DMA with no IOMMU in front of it.
    pub dma_unprotected: bool,
}

/// The only value of a device's `dma` property.
pub const DMA_UNPROTECTED: &str = "unprotected";

/// Parses a config blob. Returns every error found.
#[allow(clippy::result_large_err)] // See `validate::check`.
pub fn parse(blob: &[u8]) -> Result<Config<'_>, Errors> {
    let mut errors = Errors::new();
    match parse_into(blob, &mut errors) {
        Some(config) if errors.is_empty() => Ok(config),
        _ => Err(errors),
    }
}

/// Parses a config blob, adding errors to `errors`. Returns `None` only when
/// nothing more can be read: a malformed blob, a root `compatible` that is
/// missing or not [`CONFIG_COMPATIBLE`], or a missing or malformed `board`.
pub fn parse_into<'b>(blob: &'b [u8], errors: &mut Errors) -> Option<Config<'b>> {
    let fdt = match fdt_check::check(blob) {
        Ok(fdt) => fdt,
        Err(error) => {
            errors.push(Error::Malformed { error });
            return None;
        }
    };
    let root = fdt.root();
    let at = |parts: &[&str]| Site::global(path(parts));

    // Identity first: if this is not a config, nothing else is worth reporting.
    match root.prop("compatible") {
        None => {
            errors.push(Error::MissingProperty {
                at: at(&[]),
                property: "compatible",
            });
            return None;
        }
        Some(p) => match p.as_str_list() {
            None => {
                errors.push(Error::BadProperty {
                    at: at(&["compatible"]),
                    problem: "compatible must be a list of strings",
                });
                return None;
            }
            Some(mut list) => {
                if !list.clone().any(|c| c == CONFIG_COMPATIBLE) {
                    errors.push(Error::BadCompatible {
                        at: at(&["compatible"]),
                        found: bounded(list.next().unwrap_or("")),
                        expected: CONFIG_COMPATIBLE,
                    });
                    return None;
                }
            }
        },
    }
    let board = match root.prop("board") {
        None => {
            errors.push(Error::MissingProperty {
                at: at(&[]),
                property: "board",
            });
            return None;
        }
        Some(p) => match p.as_str() {
            Some(b) => b,
            None => {
                errors.push(Error::BadProperty {
                    at: at(&["board"]),
                    problem: NOT_A_STRING,
                });
                return None;
            }
        },
    };
    let mut config = Config {
        board,
        domains: Vec::new(),
    };

    check_props(&root, &["compatible", "board"], None, &[], errors, &[]);
    let mut domains_node = None;
    for child in root.children() {
        match child.name() {
            "domains" => domains_node = Some(child),
            // Generated by `dtc -@`.
            "__symbols__" => {}
            name => errors.push(Error::UnknownNode { at: at(&[name]) }),
        }
    }
    let Some(domains) = domains_node else {
        errors.push(Error::NoDomains { at: at(&[]) });
        return Some(config);
    };
    check_props(&domains, &[], None, &["domains"], errors, &[]);

    let count = domains.children().count();
    if count == 0 {
        errors.push(Error::NoDomains {
            at: at(&["domains"]),
        });
    } else if count > MAX_DOMAINS {
        // Like every list over its limit: reported once, not checked further.
        errors.push(Error::TooMany {
            at: at(&["domains"]),
            what: Limit::Domains,
            count,
            limit: MAX_DOMAINS,
        });
        return Some(config);
    }
    for (i, node) in domains.children().enumerate() {
        let name = node.name();
        let site = || Site::new(Some(name), path(&["domains", name]));
        if let Some(problem) = domain_name_problem(name) {
            errors.push(Error::BadName {
                at: site(),
                problem,
            });
        }
        if domains.children().take(i).any(|n| n.name() == name) {
            errors.push(Error::DuplicateDomain { at: site() });
        }
        let domain = parse_domain(&node, errors);
        // Cannot fail: at most MAX_DOMAINS are taken.
        let _ = config.domains.push(domain);
    }
    Some(config)
}

const NOT_A_STRING: &str = "must be a single string";
const NOT_64BIT: &str = "must be two cells (one 64-bit value)";

/// Why `name` is not a valid domain name, if it is not.
fn domain_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("domain name is empty")
    } else if name.len() > MAX_NAME {
        Some("domain name is longer than 31 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("domain name may only contain a-z, 0-9 and '-'")
    } else {
        None
    }
}

/// Why `name` is not a valid device name, if it is not.
fn device_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("device name is empty")
    } else if name.len() > MAX_NAME {
        Some("device name is longer than 31 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b",._+-@".contains(&b))
    {
        Some("device name may only contain A-Z, a-z, 0-9 and ',._+-@'")
    } else {
        None
    }
}

/// Reports unknown and repeated properties of `node` (path `parts`).
#[inline(never)]
fn check_props(
    node: &Node<'_>,
    known: &[&str],
    domain: Option<&str>,
    parts: &[&str],
    errors: &mut Errors,
    hints: &[(&str, &'static str)],
) {
    let mut seen: Vec<&str, 16> = Vec::new();
    for prop in node.props() {
        let site = || Site::new(domain, prop_path(parts, prop.name));
        if seen.contains(&prop.name) {
            errors.push(Error::BadProperty {
                at: site(),
                problem: "property appears twice",
            });
        } else {
            let _ = seen.push(prop.name);
        }
        if !known.contains(&prop.name) && !IGNORED.contains(&prop.name) {
            errors.push(Error::UnknownProperty {
                at: site(),
                hint: hints
                    .iter()
                    .find(|(name, _)| *name == prop.name)
                    .map_or("", |(_, hint)| hint),
            });
        }
    }
}

fn prop_path(parts: &[&str], prop: &str) -> Path {
    let mut all: Vec<&str, 8> = Vec::new();
    for p in parts.iter().chain([prop].iter()) {
        let _ = all.push(p);
    }
    path(&all)
}

/// Reads properties of one node, reporting problems at their paths.
struct Reader<'n, 'b, 'e> {
    node: &'n Node<'b>,
    domain: Option<&'n str>,
    parts: &'n [&'n str],
    errors: &'e mut Errors,
    /// Whether any property was missing or malformed.
    failed: bool,
}

impl<'b> Reader<'_, 'b, '_> {
    fn site(&self, prop: &str) -> Site {
        Site::new(self.domain, prop_path(self.parts, prop))
    }

    fn bad(&mut self, prop: &str, problem: &'static str) {
        let at = self.site(prop);
        self.errors.push(Error::BadProperty { at, problem });
        self.failed = true;
    }

    fn required(&mut self, prop: &'static str) -> Option<Prop<'b>> {
        let p = self.node.prop(prop);
        if p.is_none() {
            let at = Site::new(self.domain, path(self.parts));
            self.errors
                .push(Error::MissingProperty { at, property: prop });
            self.failed = true;
        }
        p
    }

    fn str_of(&mut self, p: Prop<'b>) -> Option<&'b str> {
        let s = p.as_str();
        if s.is_none() {
            self.bad(p.name, NOT_A_STRING);
        }
        s
    }

    fn u64_of(&mut self, p: Prop<'b>) -> Option<u64> {
        let v = p.as_u64();
        if v.is_none() {
            self.bad(p.name, NOT_64BIT);
        }
        v
    }

    fn opt_str(&mut self, prop: &str) -> Option<&'b str> {
        let p = self.node.prop(prop)?;
        self.str_of(p)
    }

    fn opt_u64(&mut self, prop: &str) -> Option<u64> {
        let p = self.node.prop(prop)?;
        self.u64_of(p)
    }

    fn req_str(&mut self, prop: &'static str) -> Option<&'b str> {
        let p = self.required(prop)?;
        self.str_of(p)
    }

    fn req_u64(&mut self, prop: &'static str) -> Option<u64> {
        let p = self.required(prop)?;
        self.u64_of(p)
    }

    /// A list of 32-bit cells of at most `N` entries.
    fn cells<const N: usize>(&mut self, p: Prop<'b>, what: Limit) -> Option<Vec<u32, N>> {
        let Some(cells) = p.as_cells() else {
            self.bad(p.name, "must be a list of 32-bit cells");
            return None;
        };
        let count = p.cell_count();
        if count > N {
            let at = self.site(p.name);
            self.errors.push(Error::TooMany {
                at,
                what,
                count,
                limit: N,
            });
            self.failed = true;
            return None;
        }
        Some(cells.take(N).collect())
    }
}

#[inline(never)]
fn parse_domain<'b>(node: &Node<'b>, errors: &mut Errors) -> DomainConfig<'b> {
    let name = node.name();
    let parts = ["domains", name];
    let domain = Some(name);
    check_props(
        node,
        &[
            "compatible",
            "cpus",
            "image",
            "initrd",
            "device-tree",
            "entry",
            "bootargs",
            "fault-policy",
            "restart-limit",
            "console",
        ],
        domain,
        &parts,
        errors,
        &[],
    );
    let mut r = Reader {
        node,
        domain,
        parts: &parts,
        errors,
        failed: false,
    };

    if let Some(p) = r.required("compatible") {
        match p.as_str_list() {
            None => r.bad("compatible", "compatible must be a list of strings"),
            Some(mut list) => {
                if !list.clone().any(|c| c == DOMAIN_COMPATIBLE) {
                    let at = r.site("compatible");
                    let found = bounded(list.next().unwrap_or(""));
                    r.errors.push(Error::BadCompatible {
                        at,
                        found,
                        expected: DOMAIN_COMPATIBLE,
                    });
                }
            }
        }
    }
    let cpus = match r.required("cpus") {
        Some(p) => r.cells::<MAX_CPUS>(p, Limit::Cpus),
        None => None,
    };
    let image = match r.req_str("image") {
        Some("") => {
            r.bad("image", "image must not be empty");
            None
        }
        other => other,
    };
    let initrd = match r.opt_str("initrd") {
        Some("") => {
            r.bad("initrd", "initrd must not be empty");
            None
        }
        other => other,
    };
    let device_tree = match r.opt_str("device-tree") {
        Some("") => {
            r.bad("device-tree", "device-tree must not be empty");
            None
        }
        other => other,
    };
    let entry = r.req_u64("entry");
    let mut bootargs = r.opt_str("bootargs").unwrap_or("");
    if bootargs.len() > MAX_BOOTARGS {
        r.bad("bootargs", "bootargs is longer than 127 bytes");
        bootargs = "";
    }
    let fault_policy = match r.opt_str("fault-policy") {
        None | Some("inject-abort") => FaultPolicy::InjectAbort,
        Some("stop") => FaultPolicy::Stop,
        Some("restart") => FaultPolicy::Restart,
        Some(other) => {
            let at = r.site("fault-policy");
            r.errors.push(Error::UnknownFaultPolicy {
                at,
                value: bounded(other),
            });
            FaultPolicy::InjectAbort
        }
    };
    let restart_limit = match node.prop("restart-limit") {
        None => crate::plan::RESTART_LIMIT,
        Some(p) => match p.as_u32() {
            Some(n) => n,
            None => {
                r.bad("restart-limit", "restart-limit must be one 32-bit cell");
                crate::plan::RESTART_LIMIT
            }
        },
    };
    let console = match r.opt_str("console") {
        None => None,
        Some("virtual") => Some(Console::Virtual),
        Some("none") => Some(Console::None),
        Some(other) => {
            let at = r.site("console");
            r.errors.push(Error::UnknownConsole {
                at,
                value: bounded(other),
            });
            None
        }
    };

    let mut domain_cfg = DomainConfig {
        name,
        cpus,
        image,
        initrd,
        device_tree,
        entry,
        bootargs,
        fault_policy,
        restart_limit,
        console,
        regions: Vec::new(),
        regions_complete: true,
        devices: Vec::new(),
        devices_complete: true,
    };
    let errors = r.errors;

    let mut memory = None;
    let mut devices = None;
    for child in node.children() {
        match child.name() {
            "memory" if memory.is_none() => memory = Some(child),
            "devices" if devices.is_none() => devices = Some(child),
            other => errors.push(Error::UnknownNode {
                at: Site::new(domain, path(&["domains", name, other])),
            }),
        }
    }
    if let Some(memory) = memory {
        parse_regions(&memory, &mut domain_cfg, errors);
    }
    if let Some(devices) = devices {
        parse_devices(&devices, &mut domain_cfg, errors);
    }
    domain_cfg
}

#[inline(never)]
fn parse_regions<'b>(memory: &Node<'b>, domain: &mut DomainConfig<'b>, errors: &mut Errors) {
    let dname = domain.name;
    let parts = ["domains", dname, "memory"];
    check_props(memory, &[], Some(dname), &parts, errors, &[]);
    let count = memory.children().count();
    if count > MAX_REGIONS {
        errors.push(Error::TooMany {
            at: Site::new(Some(dname), path(&parts)),
            what: Limit::Regions,
            count,
            limit: MAX_REGIONS,
        });
        domain.regions_complete = false;
        return;
    }
    for node in memory.children() {
        let rname = node.name();
        let parts = ["domains", dname, "memory", rname];
        check_props(
            &node,
            &["guest-address", "size", "physical-address", "identity"],
            Some(dname),
            &parts,
            errors,
            &[(
                "reg",
                "a region's addresses are given by guest-address, size and physical-address",
            )],
        );
        for child in node.children() {
            errors.push(Error::UnknownNode {
                at: Site::new(
                    Some(dname),
                    path(&["domains", dname, "memory", rname, child.name()]),
                ),
            });
        }
        let mut r = Reader {
            node: &node,
            domain: Some(dname),
            parts: &parts,
            errors,
            failed: false,
        };
        let guest = r.req_u64("guest-address");
        let size = r.req_u64("size");
        let fixed = r.opt_u64("physical-address");
        let identity = match node.prop("identity") {
            Some(p) if !p.value.is_empty() => {
                r.bad("identity", "identity is a flag and takes no value");
                false
            }
            Some(_) => true,
            None => false,
        };
        if identity && node.prop("physical-address").is_some() {
            r.bad(
                "identity",
                "identity and physical-address exclude each other",
            );
        }
        let failed = r.failed;
        let placement = match (fixed, identity) {
            (Some(pa), _) => Placement::Fixed(pa),
            (None, true) => Placement::Identity,
            (None, false) => Placement::Anywhere,
        };
        match (guest, size) {
            (Some(guest), Some(size)) if !failed => {
                let _ = domain.regions.push(RegionConfig {
                    name: rname,
                    guest,
                    size,
                    placement,
                });
            }
            _ => domain.regions_complete = false,
        }
    }
}

const DEVICE_PROPS: &[&str] = &[
    "board-device",
    "pci-function",
    "bars",
    "guest-address",
    "physical-address",
    "size",
    "spis",
    "compatible",
    "dma",
];
const EXPLICIT_ONLY: &[&str] = &["physical-address", "size", "spis", "compatible"];
/// [`EXPLICIT_ONLY`], then what else `pci-function` excludes.
const NOT_WITH_PCI: &[&str] = &[
    "physical-address",
    "size",
    "spis",
    "compatible",
    "board-device",
    "guest-address",
];

/// `bars = <index addr-hi addr-lo>...`: one triple of cells per BAR whose
/// address the config fixes, at most [`crate::pci::MAX_FIXED_BARS`], each
/// index once. Whether the index and address make sense is the checker's
/// (`validate`) and, once the function's BARs are sized, the firmware's.
#[inline(never)]
fn parse_bars<'b>(
    r: &mut Reader<'_, 'b, '_>,
    p: Prop<'b>,
) -> Option<Vec<crate::pci::FixedBar, { crate::pci::MAX_FIXED_BARS }>> {
    const FORM: &str = "bars is a list of <index addr-hi addr-lo> triples (BAR index 0-5, 64-bit physical address), at most 6";
    let count = p.cell_count();
    let Some(cells) = p.as_cells() else {
        r.bad("bars", FORM);
        return None;
    };
    if count == 0 || !count.is_multiple_of(3) || count > 3 * crate::pci::MAX_FIXED_BARS {
        r.bad("bars", FORM);
        return None;
    }
    let cells: Vec<u32, { 3 * crate::pci::MAX_FIXED_BARS }> = cells.take(count).collect();
    let mut bars: Vec<crate::pci::FixedBar, { crate::pci::MAX_FIXED_BARS }> = Vec::new();
    for t in cells.chunks_exact(3) {
        let bar = crate::pci::FixedBar {
            index: t[0],
            addr: ((t[1] as u64) << 32) | t[2] as u64,
        };
        if bars.iter().any(|b| b.index == bar.index) {
            r.bad("bars", "bars gives one BAR index twice");
            return None;
        }
        let _ = bars.push(bar);
    }
    Some(bars)
}

#[inline(never)]
fn parse_devices<'b>(devices: &Node<'b>, domain: &mut DomainConfig<'b>, errors: &mut Errors) {
    let dname = domain.name;
    let parts = ["domains", dname, "devices"];
    check_props(devices, &[], Some(dname), &parts, errors, &[]);
    let count = devices.children().count();
    if count > MAX_DEVICES {
        errors.push(Error::TooMany {
            at: Site::new(Some(dname), path(&parts)),
            what: Limit::Devices,
            count,
            limit: MAX_DEVICES,
        });
        domain.devices_complete = false;
        return;
    }
    for (i, node) in devices.children().enumerate() {
        let name = node.name();
        let parts = ["domains", dname, "devices", name];
        let site = || Site::new(Some(dname), path(&parts));
        let mut failed = false;
        if let Some(problem) = device_name_problem(name) {
            errors.push(Error::BadName {
                at: site(),
                problem,
            });
            failed = true;
        } else if devices.children().take(i).any(|n| n.name() == name) {
            errors.push(Error::BadName {
                at: site(),
                problem: "another device of the domain has this name",
            });
            failed = true;
        }
        check_props(
            &node,
            DEVICE_PROPS,
            Some(dname),
            &parts,
            errors,
            &[
                ("reg", "explicit devices use physical-address and size"),
                (
                    "interrupts",
                    "explicit devices use spis, a list of SPI numbers (GIC INTID - 32)",
                ),
            ],
        );
        for child in node.children() {
            errors.push(Error::UnknownNode {
                at: Site::new(
                    Some(dname),
                    path(&["domains", dname, "devices", name, child.name()]),
                ),
            });
        }
        let mut r = Reader {
            node: &node,
            domain: Some(dname),
            parts: &parts,
            errors,
            failed,
        };
        let guest = r.opt_u64("guest-address");
        let dma_unprotected = match r.opt_str("dma") {
            None => false,
            Some(DMA_UNPROTECTED) => true,
            Some(_) => {
                r.bad(
                    "dma",
                    "dma takes one value, \"unprotected\" (accepting that the device's DMA reaches all memory)",
                );
                false
            }
        };
        let source = if let Some(p) = node.prop("pci-function") {
            for extra in NOT_WITH_PCI {
                if node.prop(extra).is_some() {
                    r.bad(
                        extra,
                        "not allowed together with pci-function (its BARs are placed at boot, at their physical addresses)",
                    );
                }
            }
            let bars = match node.prop("bars") {
                Some(b) => parse_bars(&mut r, b),
                None => Some(Vec::new()),
            };
            match (r.str_of(p).map(crate::pci::Bdf::parse), bars) {
                (Some(Some(bdf)), Some(bars)) => Some(DeviceSource::Pci(bdf, bars)),
                (Some(Some(_)), None) => None,
                (Some(None), _) => {
                    r.bad(
                        "pci-function",
                        "pci-function is a function's address as lspci prints it: \"bb:dd.f\" (hex bus and device, function 0-7)",
                    );
                    None
                }
                (None, _) => None,
            }
        } else if node.prop("bars").is_some() {
            r.bad(
                "bars",
                "bars fixes BAR addresses of a PCI function: only together with pci-function",
            );
            None
        } else if let Some(p) = node.prop("board-device") {
            let board_device = r.str_of(p);
            for extra in EXPLICIT_ONLY {
                if node.prop(extra).is_some() {
                    r.bad(extra, "not allowed together with board-device");
                }
            }
            board_device.map(DeviceSource::Board)
        } else if EXPLICIT_ONLY.iter().all(|p| node.prop(p).is_none()) {
            // Neither form: name the simpler one.
            r.required("board-device");
            None
        } else {
            let pa = r.req_u64("physical-address");
            let size = r.req_u64("size");
            let spis = match node.prop("spis") {
                Some(p) => r.cells::<MAX_IRQS>(p, Limit::Irqs),
                None => Some(Vec::new()),
            };
            let compatible = match node.prop("compatible") {
                Some(p) => {
                    let c = r.str_of(p);
                    if c.is_some_and(|c| c.is_empty() || c.len() > MAX_COMPATIBLE) {
                        r.bad("compatible", "compatible must be 1 to 64 bytes long");
                    }
                    c
                }
                None => None,
            };
            match (pa, size, spis) {
                (Some(pa), Some(size), Some(spis)) => Some(DeviceSource::Explicit {
                    pa,
                    size,
                    spis,
                    compatible,
                }),
                _ => None,
            }
        };
        match source {
            Some(source) if !r.failed => {
                let _ = domain.devices.push(DeviceConfig {
                    name,
                    guest,
                    source,
                    dma_unprotected,
                });
            }
            _ => domain.devices_complete = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_function_excludes_the_explicit_properties_first() {
        assert_eq!(&NOT_WITH_PCI[..EXPLICIT_ONLY.len()], EXPLICIT_ONLY);
        assert_eq!(
            &NOT_WITH_PCI[EXPLICIT_ONLY.len()..],
            &["board-device", "guest-address"]
        );
    }
}
