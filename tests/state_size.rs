//! What the decision state costs per beneficiary-month (issue 11's goal: at most 200 bytes), by
//! counting the heap this test binary allocates while a month is decided and evolved through
//! the pure core (`decide` + `State::evolve`, no storage): the synthetic province of the demo,
//! every beneficiary enrolled and paid once. Allocation counts do not depend on timing or load,
//! so the figure is exact and the bound can be asserted. `--nocapture` prints the figures.

use ansinh::cli::demo_data;
use ansinh::command::{Command, PayoutLine, SubmitPayoutBatch};
use ansinh::core::{decide, Limits, State};
use ansinh::domain::{CitizenId, Period};
use ansinh::timefmt::Timestamp;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Bytes currently allocated by this process (requested sizes, without malloc's own overhead).
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

const PROGRAM: &str = "social-allowance";
const PROVINCE: &str = "056";

fn apply(state: &mut State, command: &Command) {
    let issued_at = Timestamp::parse("2025-01-20T08:00:00+07:00").expect("a valid time");
    let events = decide(state, command, &issued_at).unwrap_or_else(|r| panic!("{}: {}", r.code, r.message));
    for e in &events {
        state.evolve(e);
    }
}

/// The state after `people` beneficiaries are enrolled and paid for `months` months, and the
/// bytes it holds on the heap.
fn month_state(people: usize, months: u8) -> (State, usize) {
    let beneficiaries = demo_data::beneficiaries(7, people, PROVINCE, PROGRAM);
    let before = LIVE.load(Ordering::Relaxed);
    let mut state = State::new(Limits::default());
    for (_, _, command) in demo_data::program_rules(PROGRAM) {
        apply(&mut state, &command);
    }
    for b in &beneficiaries {
        apply(&mut state, &Command::EnrollBeneficiary(b.enroll.clone()));
    }
    for month in 1..=months {
        let period = Period::new(2025, month).expect("a month of 2025");
        let lines: Vec<PayoutLine> = beneficiaries
            .iter()
            .filter_map(|b| {
                let cid = CitizenId::parse(&b.enroll.citizen_id).expect("generated IDs are valid");
                state.entitlement(&cid, PROGRAM, period).map(|(_, amount)| PayoutLine { citizen_id: cid.to_string(), amount: amount.to_string() })
            })
            .collect();
        let total: u64 = lines.iter().map(|l| l.amount.parse::<u64>().expect("amounts are numbers")).sum();
        apply(
            &mut state,
            &Command::FundBudget(ansinh::command::FundBudget {
                province: PROVINCE.into(),
                program_id: PROGRAM.into(),
                period: period.to_string(),
                amount: total.to_string(),
                reference: "size test".into(),
            }),
        );
        for (k, chunk) in lines.chunks(10_000).enumerate() {
            let batch = SubmitPayoutBatch {
                batch_id: format!("SIZE-{month:02}-{k:04}"),
                program_id: PROGRAM.into(),
                province: PROVINCE.into(),
                period: period.to_string(),
                lines: chunk.to_vec(),
            };
            apply(&mut state, &Command::SubmitPayoutBatch(batch));
        }
    }
    let bytes = (LIVE.load(Ordering::Relaxed) - before).max(0) as usize;
    (state, bytes)
}

/// Runs in one test function: the counter is process-wide, so no other test may allocate
/// meanwhile.
#[test]
fn the_decision_state_costs_at_most_200_bytes_per_beneficiary_month() {
    let people = 60_000;
    for months in [1u8, 3] {
        let (state, bytes) = month_state(people, months);
        let paid = state.regular_count();
        assert!(paid > people * 9 / 10 * usize::from(months), "most beneficiaries are paid each month ({paid})");
        let per_month = bytes as f64 / paid as f64;
        let per_person = bytes as f64 / state.people().len() as f64;
        let estimate = state.heap_bytes();
        println!("{people} beneficiaries, {months} month(s): {bytes} bytes of decision state, {per_month:.1} bytes per beneficiary-month ({paid} paid), {per_person:.1} bytes per beneficiary; State::heap_bytes estimates {estimate}");
        let off = (estimate as f64 - bytes as f64).abs() / bytes as f64;
        assert!(off < 0.15, "State::heap_bytes ({estimate}) is {:.0} % off the bytes counted ({bytes})", off * 100.0);
        assert!(per_month <= 200.0, "{per_month:.1} bytes per beneficiary-month, over the goal of 200");
        drop(state);
    }
}
