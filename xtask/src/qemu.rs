//! Running an image under QEMU `virt`, for `run`, the integration tests and
//! the benchmarks. Every run has a hard timeout: QEMU itself is started under
//! `timeout`, so even a test process that dies cannot leave it running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::QEMU;

/// How to start the machine.
#[derive(Clone, Debug)]
pub struct Machine {
    /// The board (`board-support` name) whose QEMU model is started.
    pub board: String,
    pub cpu: String,
    pub gic: u32,
    pub smp: u32,
    pub mem_mib: u32,
    /// `-icount shift=0,sleep=off`: deterministic timing for latency figures.
    pub icount: bool,
    /// Hard limit on the whole run.
    pub timeout: Duration,
    /// Connect the second UART to a socket so tests can type into it
    /// ([`Run::send_uart1`]); its output is still captured to `uart1.log`.
    pub uart1_input: bool,
    /// The same for the first UART, the partitioner's console
    /// ([`Run::send_uart0`]); its output is still captured to `uart0.log`.
    pub uart0_input: bool,
    /// EL2 available (the partitioner needs it; native runs of a domain
    /// program turn it off so QEMU starts them at EL1).
    pub virtualization: bool,
    /// More QEMU arguments (e.g. `-initrd`/`-append` for a native Linux run).
    pub extra: Vec<String>,
    /// Place the image at this address with QEMU's generic loader and start
    /// core 0 there, instead of `-kernel` (which puts it where the board's
    /// loader would): proves the firmware runs wherever it is put. For
    /// [`Boot::Kernel`] only.
    pub load_at: Option<u64>,
    /// How the file given to [`Run::start`] is booted.
    pub boot: Boot,
}

/// How the machine gets its software.
#[derive(Clone, Debug, Default)]
pub enum Boot {
    /// `-kernel FILE`: QEMU's own loader enters it (an arm64 `Image` at
    /// EL2, with virtualization on), or the generic loader with `load_at`.
    #[default]
    Kernel,
    /// `-bios FIRMWARE` (U-Boot), with FILE attached as a virtio-blk disk
    /// (on virt, the first `-device` takes the highest virtio-mmio
    /// transport, 0x0a003e00: the board's `virtio-mmio3` page).
    FirmwareWithDisk(PathBuf),
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            board: crate::image::DEFAULT_BOARD.into(),
            cpu: "cortex-a72".into(),
            gic: 3,
            smp: 4,
            mem_mib: 1024,
            icount: false,
            timeout: Duration::from_secs(120),
            uart1_input: false,
            uart0_input: false,
            virtualization: true,
            extra: Vec::new(),
            load_at: None,
            boot: Boot::Kernel,
        }
    }
}

impl Machine {
    /// The QEMU model of [`Machine::board`].
    pub fn model(&self) -> std::io::Result<bulkhead_core::board::QemuModel> {
        board_support::by_name(&self.board)
            .and_then(|b| b.qemu)
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "board \"{}\" has no QEMU model (boards: {})",
                    self.board,
                    crate::image::board_names()
                ))
            })
    }

    /// QEMU arguments for `kernel` (everything but the serial ports); with
    /// [`Boot::FirmwareWithDisk`], `kernel` is the disk image.
    pub fn args(&self, kernel: &Path) -> Vec<String> {
        // An unknown board was refused by `Run::start` already.
        let model = self.model().ok();
        let mut machine = model
            .map_or("virt,virtualization=on,gic-version={gic}", |m| m.machine)
            .replace("{gic}", &self.gic.to_string());
        if !self.virtualization {
            machine = machine.replace("virtualization=on", "virtualization=off");
        }
        let mut a: Vec<String> = vec!["-M".into(), machine];
        if model.is_none_or(|m| m.cpu_choice) {
            a.extend(["-cpu".into(), self.cpu.clone()]);
        }
        let mem = model.and_then(|m| m.memory_mib).unwrap_or(self.mem_mib);
        let smp = model.and_then(|m| m.smp).unwrap_or(self.smp);
        a.extend([
            "-smp".into(),
            smp.to_string(),
            "-m".into(),
            format!("{mem}M"),
            "-display".into(),
            "none".into(),
            "-no-reboot".into(),
        ]);
        match (&self.boot, self.load_at) {
            (Boot::FirmwareWithDisk(bios), _) => a.extend([
                "-bios".into(),
                bios.display().to_string(),
                "-drive".into(),
                format!("if=none,file={},format=raw,id=disk", kernel.display()),
                "-device".into(),
                "virtio-blk-device,drive=disk".into(),
            ]),
            (Boot::Kernel, None) => a.extend(["-kernel".into(), kernel.display().to_string()]),
            (Boot::Kernel, Some(at)) => a.extend([
                "-device".into(),
                format!("loader,file={},addr={at:#x},cpu-num=0", kernel.display()),
            ]),
        }
        if let Some(m) = model {
            a.extend(m.args.iter().map(|s| s.to_string()));
        }
        a.extend(self.extra.iter().cloned());
        // Debugging aid: more arguments for every QEMU started (for example
        // `-d guest_errors` or `-trace gic_*`), whitespace-separated.
        if let Ok(more) = std::env::var("BULKHEAD_QEMU_ARGS") {
            a.extend(more.split_whitespace().map(String::from));
        }
        if self.icount {
            a.extend(["-icount".into(), "shift=0,sleep=off".into()]);
        }
        a
    }
}

/// A running QEMU whose two UARTs are captured to files.
pub struct Run {
    child: Child,
    uart1: Option<std::os::unix::net::UnixStream>,
    uart0: Option<std::os::unix::net::UnixStream>,
    pub dir: PathBuf,
    started: Instant,
    deadline: Instant,
    /// What only this run's QEMU has on its command line: its first UART.
    uart0_arg: String,
}

/// The partitioner's console (first PL011).
pub const UART0: &str = "uart0.log";
/// The second PL011 (a domain's passthrough UART in the default config).
pub const UART1: &str = "uart1.log";

impl Run {
    /// Start `kernel` with its UARTs captured under `dir` (emptied first).
    pub fn start(m: &Machine, kernel: &Path, dir: &Path) -> std::io::Result<Run> {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir)?;
        let u0 = dir.join(UART0);
        let u1 = dir.join(UART1);
        let secs = m.timeout.as_secs().max(1);
        let sock0 = dir.join("uart0.sock");
        let sock1 = dir.join("uart1.sock");
        // A UART tests type into is a socket QEMU waits for us to connect
        // to before it starts the machine; otherwise a file.
        let backend = |input: bool, sock: &Path, log: &Path| {
            if input {
                format!("unix:{},server=on,wait=on", sock.display())
            } else {
                format!("file:{}", log.display())
            }
        };
        let uart0_arg = backend(m.uart0_input, &sock0, &u0);
        // The console is the model's `console_serial`-th port (uart0.log);
        // the next one is uart1.log; any other is not connected.
        let model = m.model()?;
        let mut serials = vec!["null".to_string(); model.serials.max(model.console_serial + 1)];
        serials[model.console_serial] = uart0_arg.clone();
        if let Some(s) = serials.get_mut(model.console_serial + 1) {
            *s = backend(m.uart1_input, &sock1, &u1);
        }
        let mut child = Command::new("timeout")
            .args(["--kill-after=5", &secs.to_string(), QEMU])
            .args(m.args(kernel))
            .args(["-monitor", "none"])
            .args(serials.iter().flat_map(|s| ["-serial", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("qemu.stderr"))?)
            .spawn()?;
        // QEMU opens its serial backends in order: the first UART's socket
        // is connected to first.
        let mut streams = [None, None];
        for (i, (input, sock, log)) in [(m.uart0_input, &sock0, &u0), (m.uart1_input, &sock1, &u1)]
            .into_iter()
            .enumerate()
        {
            if !input {
                continue;
            }
            match connect(sock, log) {
                Ok(s) => streams[i] = Some(s),
                Err(e) => {
                    let _ = child.kill();
                    return Err(e);
                }
            }
        }
        let [uart0, uart1] = streams;
        let now = Instant::now();
        Ok(Run {
            child,
            uart0,
            uart1,
            dir: dir.to_path_buf(),
            started: now,
            deadline: now + m.timeout,
            uart0_arg,
        })
    }

    /// Type `bytes` into the second UART (needs `Machine::uart1_input`).
    pub fn send_uart1(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match &mut self.uart1 {
            Some(s) => s.write_all(bytes),
            None => Err(std::io::Error::other("start the machine with uart1_input")),
        }
    }

    /// Type `bytes` into the first UART, the partitioner's console (needs
    /// `Machine::uart0_input`).
    pub fn send_uart0(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match &mut self.uart0 {
            Some(s) => s.write_all(bytes),
            None => Err(std::io::Error::other("start the machine with uart0_input")),
        }
    }

    /// Everything a UART has printed so far.
    pub fn output(&self, uart: &str) -> String {
        fs::read(self.dir.join(uart))
            .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
            .unwrap_or_default()
    }

    /// Wait until `uart` has printed a line satisfying `pred`, at most
    /// `timeout`. Returns the matching line, or an error with both consoles.
    pub fn wait_for(
        &mut self,
        uart: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let limit = (Instant::now() + timeout).min(self.deadline);
        loop {
            let out = self.output(uart);
            // Only whole lines: the guest may be in the middle of one.
            let complete = &out[..out.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(l) = complete.lines().find(|l| pred(l)) {
                return Ok(l.to_string());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= limit {
                return Err(format!(
                    "{} waiting for {what} on {uart} after {:.1}s\n{}",
                    if exited { "QEMU exited" } else { "timed out" },
                    self.started.elapsed().as_secs_f64(),
                    self.transcript()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for a line containing `needle`.
    pub fn wait_line(
        &mut self,
        uart: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        self.wait_for(uart, &format!("{needle:?}"), timeout, |l| {
            l.contains(needle)
        })
    }

    /// Both consoles and QEMU's stderr, for failure messages.
    pub fn transcript(&self) -> String {
        let err = fs::read_to_string(self.dir.join("qemu.stderr")).unwrap_or_default();
        format!(
            "--- uart0 (partitioner console) ---\n{}\n--- uart1 ---\n{}\n--- qemu stderr ---\n{}",
            tail(&self.output(UART0), 80),
            tail(&self.output(UART1), 40),
            err.trim_end()
        )
    }

    /// Whether QEMU has exited (or was ended by its time limit).
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `timeout` forwards nothing on SIGKILL: end QEMU too.
        let _ = Command::new("pkill").args(["-f", &self.uart0_arg]).status();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connect to a UART's socket (QEMU waits for it), copying what the UART
/// prints into `log`, like the file backend.
fn connect(sock: &Path, log: &Path) -> std::io::Result<std::os::unix::net::UnixStream> {
    let limit = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) if Instant::now() > limit => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut reader = s.try_clone()?;
    let mut log = fs::File::create(log)?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut log);
    });
    Ok(s)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
