//! What the decision state costs per one-off payee (issue 12: 106.9 million people, one line
//! each), counted by an allocator as `state_size.rs` counts a beneficiary-month: a one-off
//! program, its budget, and the generator's lines (90 % to a bank, 10 % in cash) decided and
//! evolved through the pure core. A payee has no person record: an 8-byte entry of the
//! program's `taken` table and, paid or not, the 16-byte slot of its line. `--nocapture` prints
//! the figures. One test function: the counter is process-wide.

use ansinh::bench::oneoff_data::OneOffBatches;
use ansinh::command::{Command, DefineOneOffProgram, FundOneOff};
use ansinh::core::{decide, Limits, State};
use ansinh::event::EventData;
use ansinh::timefmt::Timestamp;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PROGRAM: &str = "ho-tro-100k-2025";
const AT: &str = "2025-09-01T08:00:00+07:00";

fn apply(state: &mut State, command: &Command) -> Vec<EventData> {
    let issued_at = Timestamp::parse(AT).expect("a valid time");
    let events = decide(state, command, &issued_at).unwrap_or_else(|r| panic!("{}: {}", r.code, r.message));
    for e in &events {
        state.evolve(e);
    }
    events
}

#[test]
fn a_one_off_payee_costs_under_64_bytes_of_decision_state() {
    let payees: u64 = 300_000;
    let batches = OneOffBatches::new(PROGRAM, AT, payees, 1_000);
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = State::new(Limits::default());
    apply(
        &mut state,
        &Command::DefineOneOffProgram(DefineOneOffProgram {
            program_id: PROGRAM.into(),
            name: "Quà tặng 100.000 đồng".into(),
            amount: "100000".into(),
            eligible_cutoff: "2025-08-30".into(),
            period: "2025-09".into(),
            legal_basis: String::new(),
        }),
    );
    apply(&mut state, &Command::FundOneOff(FundOneOff { program_id: PROGRAM.into(), amount: (payees * 100_000).to_string(), reference: String::new() }));
    let (mut paid, mut cash) = (0u64, 0u64);
    for envelope in batches {
        for e in apply(&mut state, &envelope.command) {
            match e {
                EventData::PayoutInstructed(_) => paid += 1,
                EventData::OneOffCashListed(_) => cash += 1,
                EventData::PayoutLineRejected(r) => panic!("a generated line is refused: {} {}", r.code, r.message),
                _ => {}
            }
        }
    }
    let bytes = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    assert_eq!(paid + cash, payees);
    assert_eq!(state.one_off_count() as u64, payees);
    let per_payee = bytes as f64 / payees as f64;
    let estimate = state.heap_bytes();
    println!("{payees} one-off payees ({paid} to banks, {cash} in cash, {} batches): {bytes} bytes of decision state, {per_payee:.1} bytes per payee; State::heap_bytes estimates {estimate}", state.batch_count());
    let off = (estimate as f64 - bytes as f64).abs() / bytes as f64;
    assert!(off < 0.15, "State::heap_bytes ({estimate}) is {:.0} % off the bytes counted ({bytes})", off * 100.0);
    assert!(per_payee < 64.0, "{per_payee:.1} bytes per one-off payee, over the bound of 64");
    // The payouts settle like any other: the state can find each one by its id.
    assert!(state.payout("OO-0000-000001-000001").is_some() || state.payout("OO-0000-000001-000002").is_some());
}
