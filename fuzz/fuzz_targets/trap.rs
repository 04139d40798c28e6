//! The trap decoder: `decode` of any ESR_EL2, its `Syndrome` text,
//! `instruction_len`, and `external_abort` with any register values.
#![no_main]

use bulkhead_core::trap::{
    aarch32_condition_passed, decode, ec, external_abort, fsc_name, instruction_len, itstate,
    set_way_op, step_spsr, Exit, Syndrome, FSC_EXTERNAL_ABORT, SPSR_EL1H_DAIF_MASKED,
};
use bulkhead_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let esr = input.u64();
    let (spsr, elr, far, vbar) = (input.u64(), input.u64(), input.u64(), input.u64());

    let len = instruction_len(esr);
    assert_eq!(len, if esr & (1 << 25) != 0 { 4 } else { 2 });
    let exit = decode(esr);
    let ec_bits = ((esr >> 26) & 0x3f) as u8;
    match exit {
        Exit::DataAbort { fsc, access, .. } => {
            assert!(ec_bits == ec::DABT_LOWER || ec_bits == ec::DABT_CURRENT);
            assert!(fsc < 64);
            let _ = fsc_name(fsc);
            if let Some(a) = access {
                assert!(matches!(a.size, 1 | 2 | 4 | 8));
                assert!(a.reg <= 31);
                // What a load writes: a W register's upper half is zero; a
                // zero-extending load keeps only its own bytes.
                let v = a.load_value(far);
                if !a.sixty_four {
                    assert_eq!(v >> 32, 0);
                }
                if !a.sign_extend && a.size < 8 {
                    assert_eq!(v >> (8 * u32::from(a.size)), 0);
                }
                let _ = a.misaligned(elr);
            }
        }
        Exit::InstructionAbort { fsc, .. } => {
            assert!(fsc < 64);
            let _ = fsc_name(fsc);
        }
        Exit::Hvc { imm } | Exit::Smc { imm } => assert_eq!(u64::from(imm), esr & 0xffff),
        Exit::SysReg {
            reg,
            op0,
            op1,
            crn,
            crm,
            op2,
            ..
        } => {
            assert!(reg <= 31 && op0 < 4 && op1 < 8 && crn < 16 && crm < 16 && op2 < 8);
            let _ = set_way_op(op0, op1, crn, crm, op2);
        }
        Exit::Wfx => assert_eq!(ec_bits, ec::WFX),
        Exit::Other { ec } => assert_eq!(ec, ec_bits),
        Exit::Coproc(c) => {
            assert!(matches!(ec_bits, 0x03 | 0x04 | 0x05 | 0x0c));
            assert!(matches!(c.cp, 14 | 15));
            assert!(c.rt <= 31 && c.rt2.is_none_or(|r| r <= 31));
            assert!(c.opc1 < 16 && c.crn < 16 && c.crm < 16 && c.opc2 < 8);
            assert!(c.cond.is_none_or(|k| k < 16));
            // A read writes at most r0-r14 (x0-x14), never the flags twice.
            for r in c.read_registers().into_iter().flatten() {
                assert!(r <= 14);
            }
            let _ = aarch32_condition_passed(c.cond, spsr);
        }
    }
    // Stepping over an instruction keeps everything but ITSTATE.
    let it_mask = (0x3 << 25) | (0x3f << 10);
    assert_eq!(step_spsr(spsr) & !it_mask, spsr & !it_mask);
    let _ = itstate(spsr);
    assert!(!format!("{}", Syndrome(esr)).is_empty());

    let inj = external_abort(esr, spsr, elr, far, vbar);
    let new_ec = ((inj.esr_el1 >> 26) & 0x3f) as u8;
    assert!(matches!(
        new_ec,
        ec::IABT_LOWER | ec::IABT_CURRENT | ec::DABT_LOWER | ec::DABT_CURRENT
    ));
    assert_eq!(inj.esr_el1 & 0x3f, u64::from(FSC_EXTERNAL_ABORT));
    assert_eq!(inj.esr_el1 & (1 << 25), esr & (1 << 25), "IL is kept");
    assert_eq!(inj.esr_el1 >> 32, 0);
    assert_eq!((inj.elr_el1, inj.spsr_el1, inj.far_el1), (elr, spsr, far));
    assert_eq!(inj.spsr_el2, SPSR_EL1H_DAIF_MASKED);
    // VBAR_EL1 bits 10:0 are RES0: the vector base ignores them.
    let offset = inj.elr_el2.wrapping_sub(vbar & !0x7ff);
    assert!(
        matches!(offset, 0 | 0x200 | 0x400 | 0x600),
        "vector offset {offset:#x}"
    );
});
