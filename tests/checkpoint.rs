//! The checkpointing schedule (src/checkpoint.rs, docs/design.md "Checkpointing"), apart from any
//! engine: its actions replayed on a model of the memory (so every reversal has its states, at
//! most c are stored, each unit is reversed once, last to first), its forward count against a
//! dynamic program of the same cost model, which an exhaustive search confirms on small cases,
//! and against the closed form at large T.

// The dynamic program's table is indexed by (n, c), as in its recurrence.
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeSet, HashMap, VecDeque};

use bptt::checkpoint::{Action, Costs, Plan, advances, choose};

/// Replays `plan`'s actions on abstract states and returns the forward steps evaluated,
/// checking every rule of the model on the way.
fn replay(plan: &Plan) -> u64 {
    let n = plan.units;
    let mut slots: Vec<Option<usize>> = vec![None; plan.slots];
    let mut current: Option<usize> = Some(0); // x_0 = h0 is where every run starts
    let mut held: Option<usize> = None;
    let mut next_reversal = n; // units are reversed n, n−1, …, 1
    let mut swept = false; // the tail has run
    let mut evaluated = 0u64;
    let mut actions = Vec::new();
    for a in plan.actions() {
        actions.push(a);
        match a {
            Action::Advance { from, to, sweep } => {
                assert_eq!(current, Some(from), "{plan:?}: advance from a state that is not current");
                assert!(from < to && to < n, "{plan:?}: advance {from}→{to}");
                assert_eq!(sweep, !swept, "{plan:?}: the sweep flag");
                evaluated += (from + 1..=to).map(|j| plan.unit_len(j) as u64).sum::<u64>();
                current = Some(to);
            }
            Action::Store { slot, state } => {
                assert_eq!(current, Some(state), "{plan:?}: store of a state that is not current");
                assert!(slot < plan.slots, "{plan:?}: slot {slot} of {}", plan.slots);
                // A stack: slot k is written only above slots that hold states below this one.
                assert!(slots[..slot].iter().all(|s| s.is_some_and(|s| s < state)), "{plan:?}: not a stack");
                slots[slot] = Some(state);
                slots[slot + 1..].iter_mut().for_each(|s| *s = None);
            }
            Action::Restore { slot, state } => {
                assert_eq!(slots[slot], Some(state), "{plan:?}: restore of slot {slot}");
                current = Some(state);
            }
            Action::Tail => {
                assert!(!swept, "{plan:?}: a second tail");
                assert_eq!(current, Some(n - 1), "{plan:?}: the tail starts from x_(n−1)");
                evaluated += plan.unit_len(n) as u64;
                held = Some(n);
                swept = true;
            }
            Action::Reverse { unit } => {
                assert!(swept, "{plan:?}: a reversal before the first sweep ended");
                assert_eq!(unit, next_reversal, "{plan:?}: units are reversed last to first");
                assert_eq!((current, held), (Some(unit - 1), Some(unit)), "{plan:?}: reversal of {unit}");
                if unit < n {
                    evaluated += plan.unit_len(unit) as u64 - 1; // the unit's inner states
                }
                next_reversal -= 1;
                held = Some(unit - 1);
                current = None;
            }
        }
        let stored = slots.iter().filter(|s| s.is_some()).count();
        assert!(stored <= plan.slots, "{plan:?}: {stored} states stored");
    }
    assert_eq!(next_reversal, 0, "{plan:?}: every unit reversed");
    assert_eq!(plan.count(actions), evaluated, "{plan:?}: Plan::count");
    evaluated
}

/// The dynamic program of the cost model, by exhaustive minimisation: to reverse n units with
/// x_0 stored, x_n held and c slots, advance i units and store x_i (1 ≤ i < n), reverse the n − i
/// units above with c − 1 slots, then the i below with c (x_i is held by then). With one slot
/// every reversal of unit j advances from x_0 to x_(j−1).
fn dp(max_n: usize, max_c: usize) -> Vec<Vec<u64>> {
    let mut p = vec![vec![0u64; max_c + 1]; max_n + 1];
    for n in 2..=max_n {
        p[n][1] = (n * (n - 1) / 2) as u64;
        for c in 2..=max_c {
            p[n][c] = (1..n).map(|i| i as u64 + p[i][c] + p[n - i][c - 1]).min().unwrap();
        }
    }
    p
}

#[test]
fn the_dynamic_program_is_the_closed_form() {
    let p = dp(400, 16);
    for (n, row) in p.iter().enumerate().skip(1) {
        for (c, &v) in row.iter().enumerate().skip(1) {
            assert_eq!(advances(n as u64, c as u64), v, "p({n}, {c})");
        }
    }
}

/// The least forward steps of any schedule, by a search over every state of the memory model
/// (which states are stored, which is current, which held, which unit is next): no assumption
/// about the shape of a good schedule. Steps cost 1, everything else 0 (a 0-1 BFS).
fn exhaustive(n: usize, c: usize) -> u64 {
    type State = (BTreeSet<usize>, Option<usize>, Option<usize>, usize); // stored, current, held, next unit
    let start: State = (BTreeSet::from([0]), Some(0), None, n);
    let mut best: HashMap<State, u64> = HashMap::from([(start.clone(), 0)]);
    let mut queue = VecDeque::from([(start, 0u64)]);
    while let Some((state, cost)) = queue.pop_front() {
        if best[&state] < cost {
            continue;
        }
        let (stored, current, held, next) = state.clone();
        if next == 0 {
            return cost;
        }
        let mut moves: Vec<(State, u64)> = Vec::new();
        if let Some(cur) = current {
            if cur + 1 < n {
                moves.push(((stored.clone(), Some(cur + 1), held, next), 1)); // advance one unit
            }
            if cur + 1 == n && held.is_none() {
                moves.push(((stored.clone(), current, Some(n), next), 1)); // the tail
            }
            if stored.len() < c && !stored.contains(&cur) {
                let mut s = stored.clone();
                s.insert(cur);
                moves.push(((s, current, held, next), 0));
            }
            if cur + 1 == next && held == Some(next) {
                moves.push(((stored.clone(), None, Some(cur), next - 1), 0)); // reverse unit `next`
            }
        }
        for &s in &stored {
            moves.push(((stored.clone(), Some(s), held, next), 0)); // restore
            let mut fewer = stored.clone();
            fewer.remove(&s);
            moves.push(((fewer, current, held, next), 0)); // free a slot
        }
        for (m, step) in moves {
            let c2 = cost + step;
            if best.get(&m).is_none_or(|&b| c2 < b) {
                best.insert(m.clone(), c2);
                if step == 0 { queue.push_front((m, c2)) } else { queue.push_back((m, c2)) }
            }
        }
    }
    unreachable!("every chain can be reversed with one slot")
}

#[test]
fn an_exhaustive_search_finds_no_better_schedule_than_the_dynamic_program() {
    let p = dp(9, 4);
    for n in 1..=9 {
        for c in 1..=4 {
            assert_eq!(exhaustive(n, c), p[n][c] + 1, "n = {n}, c = {c}");
        }
    }
}

#[test]
fn the_schedule_reaches_the_dynamic_programs_optimum_for_every_small_case() {
    let p = dp(200, 12);
    for t in 1..=200 {
        for c in 1..=12 {
            let plan = Plan::new(t, 1, c).unwrap();
            let want = p[t][c] + 1;
            assert_eq!(replay(&plan), want, "T = {t}, c = {c}");
            assert_eq!(plan.forward_steps(), want, "T = {t}, c = {c}");
        }
    }
}

#[test]
fn units_of_several_steps_follow_the_same_count() {
    for (t, l, c) in [(10, 3, 2), (100, 7, 3), (1000, 16, 20), (999, 10, 100), (64, 64, 1), (17, 4, 1)] {
        let plan = Plan::new(t, l, c).unwrap();
        assert_eq!(replay(&plan), plan.forward_steps(), "T = {t}, L = {l}, c = {c}");
    }
    // Slots for every unit boundary: each unit but the last recomputes its inner states once.
    let plan = Plan::new(1000, 10, 100).unwrap();
    assert_eq!(plan.forward_steps(), 1000 + 99 * 9);
    // Units of one step and a slot for every state: plain BPTT, T forward steps.
    assert_eq!(Plan::new(1000, 1, 1000).unwrap().forward_steps(), 1000);
}

#[test]
fn the_published_example_stays_within_1950_forward_steps() {
    let plan = Plan::new(1000, 1, 50).unwrap();
    assert_eq!(replay(&plan), 1949);
}

#[test]
fn long_sequences_stream_their_schedule_with_the_closed_forms_count() {
    let plan = Plan::new(100_000, 1, 100).unwrap();
    assert_eq!(plan.count(plan.actions()), 294_747 + 1);
    let plan = Plan::new(1_000_000, 1, 1000).unwrap();
    assert_eq!(plan.count(plan.actions()), plan.forward_steps());
}

#[test]
fn choose_fits_the_budget_or_names_the_least() {
    let costs =
        Costs { state: 1000, per_step: 3000, fixed: 500, max_unit: 64, max_slots: usize::MAX, unit_overhead: 4.0 };
    let plan = choose(1000, Some(100_000), None, &costs).unwrap();
    assert!(costs.bytes(&plan) <= 100_000, "{plan:?}");
    // The chosen plan is no slower (by the model) than the single-step plan of the budget.
    let time =
        |p: &Plan| p.forward_steps() as f64 + 4.0 * (advances(p.units as u64, p.slots as u64) + p.units as u64) as f64;
    let single = Plan::new(1000, 1, (100_000 - 500 - 3000) / 1000).unwrap();
    assert!(time(&plan) <= time(&single), "{plan:?}");
    let err = choose(1000, Some(4000), None, &costs).unwrap_err().to_string();
    assert!(err.contains("at least 4.4 KiB") || err.contains("4500"), "{err}");
    // Fixed slots: the unit length is chosen, the budget checked.
    let plan = choose(1000, None, Some(10), &costs).unwrap();
    assert_eq!((plan.slots, plan.slots_used()), (10, 10));
    // Without a unit bound from the path, C checkpoints still mean C states stored: units of at
    // most T/C steps (here 64, the longest power of two), not one window of everything.
    let unbounded = Costs { max_unit: 1000, ..costs };
    let plan = choose(1000, None, Some(10), &unbounded).unwrap();
    assert_eq!((plan.slots_used(), plan.unit_steps), (10, 64), "{plan:?}");
    let plan = choose(1000, None, Some(50), &unbounded).unwrap();
    assert_eq!((plan.slots_used(), plan.unit_steps), (50, 16), "{plan:?}");
    assert!(choose(1000, Some(5000), Some(10), &costs).is_err());
    assert!(choose(1000, Some(0), None, &costs).is_err());
    assert!(choose(1000, None, Some(0), &costs).is_err());
}
