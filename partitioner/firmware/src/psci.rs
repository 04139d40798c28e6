//! PSCI as domains see it: their HVCs and SMCs trap to EL2 and are answered
//! here, never forwarded to the platform firmware (the partitioner's own
//! calls to the platform are in `crate::power`).

/// An HVC or SMC from a domain: answered here, never forwarded to firmware.
pub fn guest_call(
    di: usize,
    d: &'static bulkhead_core::plan::DomainPlan,
    vcpu: usize,
    frame: &mut crate::exceptions::TrapFrame,
    conduit: &str,
) {
    use crate::domain;
    use bulkhead_core::psci::{self as p, Call};
    let call = p::decode([frame.x[0], frame.x[1], frame.x[2], frame.x[3]]);
    let ret: i64 = match call {
        Call::SmcccVersion => p::SMCCC_VERSION_VALUE,
        Call::SmcccArchFeatures(f) => match f {
            p::fid::SMCCC_VERSION | p::fid::SMCCC_ARCH_FEATURES => p::SUCCESS,
            _ => bulkhead_core::speculation::arch_features(f, &crate::cpu::exposure())
                .unwrap_or(p::NOT_SUPPORTED),
        },
        // The domain's exit to EL2 already ran the hardened entry (the
        // branch-history clearing loop where the core needs it): nothing
        // more to do for a workaround it was told is there. One it was told
        // is not supported or not required stays a no-op too.
        Call::ArchWorkaround(_) => return,
        Call::Version => p::PSCI_VERSION_VALUE,
        Call::Features(f) => p::features(f),
        Call::CpuSuspend => {
            // Standby: wait for an interrupt for this vCPU, then return; it
            // is taken after the return.
            crate::irq::wait_for_vcpu_interrupt();
            p::SUCCESS
        }
        Call::CpuOff => domain::stop_this_vcpu(d),
        Call::CpuOn {
            target,
            entry,
            context,
        } => match p::vcpu_of(target, d.cpus.len()) {
            Some(v) => domain::start_vcpu(d, v, entry, context),
            None => {
                crate::report::limited!(
                    di,
                    d,
                    bulkhead_core::ratelimit::Kind::CpuOn,
                    log::warn!(
                        "domain \"{}\" vCPU {vcpu}: CPU_ON of MPIDR {target:#x}, which is not one of its vCPUs: refused",
                        d.name
                    )
                );
                p::INVALID_PARAMETERS
            }
        },
        Call::AffinityInfo { target, level } => match (p::vcpu_of(target, d.cpus.len()), level) {
            (Some(v), 0) => match domain::core_of(d, v).map(domain::core_state) {
                Some(domain::OFF) => 1,
                Some(domain::ON_PENDING) => 2,
                _ => 0,
            },
            _ => p::INVALID_PARAMETERS,
        },
        Call::SystemOff => domain::stop_domain(di, d, "it powered itself off (SYSTEM_OFF)"),
        Call::SystemReset => domain::restart_domain(di, d, "it asked for SYSTEM_RESET"),
        Call::Unknown(fid) => {
            domain::report_call_once(di, d, conduit, fid, frame.elr);
            p::NOT_SUPPORTED
        }
    };
    frame.x[0] = ret as u64;
}
