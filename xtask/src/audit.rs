//! `cargo xtask audit`: the static isolation report of a configuration.
//! Every resource of the board (cores, RAM, device pages, SPIs) and who
//! holds it: a domain, the partitioner, or nobody; the one shared path (the
//! virtual console); and every risk the configuration explicitly accepts.
//! Written as text, as JSON (schema `bulkhead-audit/1`, documented in
//! `docs/audit.md`) and as an SVG map of the physical address space.

use bulkhead_core::board::{Board, DeviceUse, Range};
use bulkhead_core::plan::{MemKind, Plan};
use std::fmt::Write as _;

/// Who holds a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    Domain(String),
    Partitioner(String),
    Nobody,
}

impl Holder {
    fn json(&self) -> String {
        match self {
            Holder::Domain(d) => format!("{{\"kind\":\"domain\",\"name\":{}}}", q(d)),
            Holder::Partitioner(why) => {
                format!("{{\"kind\":\"partitioner\",\"name\":{}}}", q(why))
            }
            Holder::Nobody => "{\"kind\":\"nobody\"}".into(),
        }
    }
    fn text(&self) -> String {
        match self {
            Holder::Domain(d) => format!("domain \"{d}\""),
            Holder::Partitioner(_) => "partitioner".into(),
            Holder::Nobody => "nobody".into(),
        }
    }
}

/// A physical range and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub pa: u64,
    pub size: u64,
    /// Guest address, for a domain's mapping.
    pub ipa: Option<u64>,
    /// `ram` or `device`.
    pub kind: &'static str,
    /// What it is: a region or device name.
    pub what: String,
    pub holder: Holder,
}

/// The audit of one configuration.
#[derive(Clone, Debug)]
pub struct Report {
    pub config: String,
    pub board: &'static str,
    pub domains: Vec<DomainSummary>,
    /// Board core index, MPIDR, holder.
    pub cores: Vec<(usize, u64, Holder)>,
    /// Every physical range, sorted by address: RAM (domains', the
    /// partitioner's, unowned) and device pages.
    pub regions: Vec<Region>,
    /// SPI number, board device it belongs to (if any), holder.
    pub spis: Vec<(u32, String, Holder)>,
    /// Shared paths: what, and which domains use it.
    pub shared: Vec<(String, Vec<String>)>,
    /// Risks the configuration explicitly accepts.
    pub risks: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct DomainSummary {
    pub name: String,
    pub vmid: u16,
    pub cores: Vec<usize>,
    pub console: &'static str,
    pub fault_policy: &'static str,
    pub restart_limit: u32,
}

fn policy(p: bulkhead_core::plan::FaultPolicy) -> &'static str {
    match p {
        bulkhead_core::plan::FaultPolicy::InjectAbort => "inject-abort",
        bulkhead_core::plan::FaultPolicy::Stop => "stop",
        bulkhead_core::plan::FaultPolicy::Restart => "restart",
    }
}

/// Subtract `used` ranges from `whole`: the parts nobody holds.
fn gaps(whole: Range, mut used: Vec<Range>) -> Vec<Range> {
    used.sort_by_key(|r| r.base);
    let mut out = Vec::new();
    let mut at = whole.base;
    let end = whole.base + whole.size;
    for r in used {
        let (b, e) = (r.base.max(whole.base), (r.base + r.size).min(end));
        if e <= b {
            continue;
        }
        if b > at {
            out.push(Range::new(at, b - at));
        }
        at = at.max(e);
    }
    if end > at {
        out.push(Range::new(at, end - at));
    }
    out
}

/// Build the report of `plan` on `board`, with the partitioner occupying
/// `footprint` of RAM.
pub fn report(config: &str, board: &Board, plan: &Plan, footprint: Range) -> Report {
    let domains = plan
        .domains
        .iter()
        .map(|d| DomainSummary {
            name: d.name.to_string(),
            vmid: d.vmid,
            cores: d.cpus.to_vec(),
            console: if d.virtual_console.is_some() {
                "virtual"
            } else if d.devices.iter().any(|x| x.compatible.contains("pl011")) {
                "own uart"
            } else {
                "none"
            },
            fault_policy: policy(d.fault_policy),
            restart_limit: d.restart_limit,
        })
        .collect();
    let cores = board
        .cpus
        .iter()
        .enumerate()
        .map(|(i, &mpidr)| {
            let holder = plan
                .domains
                .iter()
                .find(|d| d.cpus.contains(&i))
                .map_or(Holder::Nobody, |d| Holder::Domain(d.name.to_string()));
            (i, mpidr, holder)
        })
        .collect();
    let mut regions = Vec::new();
    // RAM: each domain's regions, the partitioner's footprint, the rest.
    let mut used = vec![footprint];
    regions.push(Region {
        pa: footprint.base,
        size: footprint.size,
        ipa: None,
        kind: "ram",
        what: "image, package, stacks and tables".into(),
        holder: Holder::Partitioner("firmware".into()),
    });
    for d in &plan.domains {
        for (i, m) in d.mappings().enumerate() {
            let what = if m.kind == MemKind::Ram {
                format!("RAM region {i}")
            } else {
                d.devices
                    .iter()
                    .find(|x| x.mapping == *m)
                    .map(|x| match x.board_device {
                        Some(b) => format!("{} (board device {b})", x.name),
                        None => x.name.to_string(),
                    })
                    .unwrap_or_default()
            };
            if m.kind == MemKind::Ram {
                used.push(m.pa_range());
            }
            regions.push(Region {
                pa: m.pa,
                size: m.size,
                ipa: Some(m.ipa),
                kind: if m.kind == MemKind::Ram {
                    "ram"
                } else {
                    "device"
                },
                what,
                holder: Holder::Domain(d.name.to_string()),
            });
        }
    }
    for bank in board.ram {
        for g in gaps(*bank, used.clone()) {
            regions.push(Region {
                pa: g.base,
                size: g.size,
                ipa: None,
                kind: "ram",
                what: "unassigned RAM".into(),
                holder: Holder::Nobody,
            });
        }
    }
    // Devices: what the partitioner keeps, and board devices nobody holds.
    let mut kept: Vec<(Range, &str)> = board.reserved_mmio().collect();
    kept.sort_by_key(|(r, _)| r.base);
    kept.dedup_by_key(|(r, _)| (r.base, r.size));
    for (r, why) in kept {
        regions.push(Region {
            pa: r.base,
            size: r.size,
            ipa: None,
            kind: "device",
            what: why.to_string(),
            holder: Holder::Partitioner(why.to_string()),
        });
    }
    for dev in board.devices {
        if dev.usage != DeviceUse::Assignable {
            continue;
        }
        let held = plan
            .domains
            .iter()
            .flat_map(|d| d.devices.iter())
            .any(|x| x.mapping.pa_range().overlaps(&dev.reg));
        if !held {
            regions.push(Region {
                pa: dev.reg.base,
                size: dev.reg.size,
                ipa: None,
                kind: "device",
                what: format!("board device {}", dev.name),
                holder: Holder::Nobody,
            });
        }
    }
    regions.sort_by_key(|r| (r.pa, r.size));
    // SPIs: every one a board device has or a domain holds.
    let mut spis: Vec<(u32, String, Holder)> = Vec::new();
    for dev in board.devices {
        for &s in dev.spis {
            let holder = match dev.usage {
                DeviceUse::Reserved(why) => Holder::Partitioner(why.to_string()),
                DeviceUse::Assignable => plan
                    .domains
                    .iter()
                    .find(|d| d.devices.iter().any(|x| x.spis.contains(&s)))
                    .map_or(Holder::Nobody, |d| Holder::Domain(d.name.to_string())),
            };
            spis.push((s, dev.name.to_string(), holder));
        }
    }
    for d in &plan.domains {
        for x in &d.devices {
            for &s in &x.spis {
                if !spis.iter().any(|(n, _, _)| *n == s) {
                    spis.push((s, String::new(), Holder::Domain(d.name.to_string())));
                }
            }
        }
    }
    spis.sort_by_key(|(s, _, _)| *s);
    let console_users: Vec<String> = plan
        .domains
        .iter()
        .filter(|d| d.virtual_console.is_some())
        .map(|d| d.name.to_string())
        .collect();
    let mut shared = Vec::new();
    if !console_users.is_empty() {
        shared.push((
            "virtual console (lines tagged [<domain>] on the partitioner's UART, fair turns, rate-limited partitioner reports)".to_string(),
            console_users,
        ));
    }
    Report {
        config: config.to_string(),
        board: board.name,
        domains,
        cores,
        regions,
        spis,
        shared,
        risks: plan
            .unprotected_dma()
            .map(|(d, x)| bulkhead_core::plan::DmaWarning(d, x).to_string())
            .collect(),
    }
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// A JSON string literal.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn size_text(size: u64) -> String {
    const MIB: u64 = 1 << 20;
    if size >= MIB && size.is_multiple_of(MIB) {
        format!("{} MiB", size / MIB)
    } else if size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} bytes")
    }
}

impl Report {
    /// The report for a terminal.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "audit of {} (board {})", self.config, self.board);
        let _ = writeln!(o, "domains:");
        for d in &self.domains {
            let _ = writeln!(
                o,
                "  {:<12} VMID {:<3} cores {:?}, console {}, fault policy {}, restart limit {}",
                d.name, d.vmid, d.cores, d.console, d.fault_policy, d.restart_limit
            );
        }
        let _ = writeln!(o, "cores:");
        for (i, mpidr, h) in &self.cores {
            let _ = writeln!(o, "  core {i} (MPIDR {mpidr:#x}): {}", h.text());
        }
        let _ = writeln!(o, "physical address map:");
        for r in &self.regions {
            let ipa = r.ipa.map(|i| format!(" at IPA {i:#x}")).unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:#012x}..{:#012x} {:<6} {:>9} {}{ipa}: {}",
                r.pa,
                r.pa + r.size,
                r.kind,
                size_text(r.size),
                r.holder.text(),
                r.what
            );
        }
        let _ = writeln!(o, "SPIs:");
        for (s, dev, h) in &self.spis {
            let dev = if dev.is_empty() {
                String::new()
            } else {
                format!(" ({dev})")
            };
            let _ = writeln!(o, "  SPI {s} (INTID {}){dev}: {}", s + 32, h.text());
        }
        let _ = writeln!(o, "shared paths:");
        if self.shared.is_empty() {
            let _ = writeln!(o, "  none");
        }
        for (what, users) in &self.shared {
            let _ = writeln!(o, "  {what}: {}", users.join(", "));
        }
        let _ = writeln!(o, "accepted risks:");
        if self.risks.is_empty() {
            let _ = writeln!(o, "  none");
        }
        for r in &self.risks {
            let _ = writeln!(o, "  {r}");
        }
        o
    }

    /// The report as JSON, schema `bulkhead-audit/1` (docs/audit.md).
    pub fn json(&self) -> String {
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let domains = list(
            self.domains
                .iter()
                .map(|d| {
                    format!(
                        "{{\"name\":{},\"vmid\":{},\"cores\":{:?},\"console\":{},\"fault_policy\":{},\"restart_limit\":{}}}",
                        q(&d.name),
                        d.vmid,
                        d.cores,
                        q(d.console),
                        q(d.fault_policy),
                        d.restart_limit
                    )
                })
                .collect(),
        );
        let cores = list(
            self.cores
                .iter()
                .map(|(i, m, h)| {
                    format!(
                        "{{\"core\":{i},\"mpidr\":{},\"holder\":{}}}",
                        q(&hex(*m)),
                        h.json()
                    )
                })
                .collect(),
        );
        let regions = list(
            self.regions
                .iter()
                .map(|r| {
                    format!(
                        "{{\"pa\":{},\"size\":{},\"ipa\":{},\"kind\":{},\"what\":{},\"holder\":{}}}",
                        q(&hex(r.pa)),
                        q(&hex(r.size)),
                        r.ipa.map_or("null".into(), |i| q(&hex(i))),
                        q(r.kind),
                        q(&r.what),
                        r.holder.json()
                    )
                })
                .collect(),
        );
        let spis = list(
            self.spis
                .iter()
                .map(|(s, dev, h)| {
                    format!(
                        "{{\"spi\":{s},\"intid\":{},\"board_device\":{},\"holder\":{}}}",
                        s + 32,
                        if dev.is_empty() {
                            "null".into()
                        } else {
                            q(dev)
                        },
                        h.json()
                    )
                })
                .collect(),
        );
        let shared = list(
            self.shared
                .iter()
                .map(|(what, users)| {
                    format!(
                        "{{\"what\":{},\"domains\":{}}}",
                        q(what),
                        list(users.iter().map(|u| q(u)).collect())
                    )
                })
                .collect(),
        );
        let risks = list(self.risks.iter().map(|r| q(r)).collect());
        format!(
            "{{\"schema\":\"bulkhead-audit/1\",\"config\":{},\"board\":{},\"domains\":{domains},\"cores\":{cores},\"regions\":{regions},\"spis\":{spis},\"shared\":{shared},\"accepted_risks\":{risks}}}\n",
            q(&self.config),
            q(self.board)
        )
    }

    /// An SVG map of the physical address space: one row per range, in
    /// address order, one colour per holder (a person opens it in a
    /// browser). Row widths show sizes on a logarithmic scale, so a 4 KiB
    /// device page and a 256 MiB RAM region are both visible.
    pub fn svg(&self) -> String {
        const PALETTE: [&str; 8] = [
            "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
        ];
        let colour = |h: &Holder| -> &str {
            match h {
                Holder::Partitioner(_) => "#555555",
                Holder::Nobody => "#dddddd",
                Holder::Domain(d) => {
                    let i = self.domains.iter().position(|x| &x.name == d).unwrap_or(0);
                    PALETTE[i % PALETTE.len()]
                }
            }
        };
        let row = 22;
        let top = 60;
        let height = top + row * (self.regions.len() + 2) + 40;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1100\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">"
        );
        let _ = writeln!(
            o,
            "<text x=\"10\" y=\"20\" font-size=\"16\">Bulkhead audit: {} on {}</text>",
            xml(&self.config),
            xml(self.board)
        );
        // Legend.
        let mut x = 10;
        let mut legend: Vec<Holder> = self
            .domains
            .iter()
            .map(|d| Holder::Domain(d.name.clone()))
            .collect();
        legend.push(Holder::Partitioner("partitioner".into()));
        legend.push(Holder::Nobody);
        for h in &legend {
            let label = match h {
                Holder::Domain(d) => d.clone(),
                Holder::Partitioner(_) => "partitioner".into(),
                Holder::Nobody => "nobody".into(),
            };
            let _ = writeln!(
                o,
                "<rect x=\"{x}\" y=\"32\" width=\"14\" height=\"14\" fill=\"{}\"/><text x=\"{}\" y=\"44\">{}</text>",
                colour(h),
                x + 18,
                xml(&label)
            );
            x += 28 + 8 * label.len();
        }
        for (i, r) in self.regions.iter().enumerate() {
            let y = top + row * i;
            let w = 40.0 + 24.0 * ((r.size.max(1) as f64).log2() - 11.0).max(0.0);
            let label = format!(
                "{:#012x}..{:#012x} {:>9} {} {}",
                r.pa,
                r.pa + r.size,
                size_text(r.size),
                r.kind,
                r.holder.text()
            );
            let _ = writeln!(
                o,
                "<rect x=\"10\" y=\"{y}\" width=\"{w:.0}\" height=\"{}\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{}\" y=\"{}\">{} — {}</text>",
                row - 4,
                colour(&r.holder),
                xml(&label),
                xml(&r.what),
                w as usize + 18,
                y + 13,
                xml(&label),
                xml(&r.what)
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_what_nobody_uses() {
        let whole = Range::new(0x1000, 0x9000);
        let g = gaps(
            whole,
            vec![Range::new(0x3000, 0x1000), Range::new(0x1000, 0x1000)],
        );
        assert_eq!(g, [Range::new(0x2000, 0x1000), Range::new(0x4000, 0x6000)]);
        assert_eq!(gaps(whole, vec![whole]), []);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(q("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(xml("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
