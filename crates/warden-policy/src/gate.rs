//! The admission gate: three checks proven with a CDCL SAT solver under a depth bound.
//!
//! **Solver contract.** A bundle is admitted iff all three checks are *proven*:
//!
//! 1. consistency: `⋀ predicates ∧ domains` is satisfiable (a witness is recorded);
//! 2. live preconditions: for every predicate `p` with a `when`, `when_p ∧ ⋀ predicates` is
//!    satisfiable (so `when_p ∧ require_p` holds together with all the others);
//! 3. no stranded context: `∀ context ∃ output: ⋀ predicates`.
//!
//! "Unsatisfiable" answers come with a minimal unsat core over per-predicate selector literals
//! (deletion-based shrinking: every predicate left in the core is necessary). A solver *unknown*
//! (the conflict budget or the refinement budget ran out) is a rejection as undecided, never an
//! admission.
//!
//! Check 3 is a 2QBF solved by counterexample-guided refinement with two solver instances: the
//! *candidate* instance proposes a context assignment not yet known to be covered; the *main*
//! instance (the one used by checks 1 and 2) looks for outputs satisfying every predicate under
//! that context. If it finds outputs `o`, the candidate instance learns `¬Φ(context, o)`: only
//! contexts that `o` does not already satisfy stay candidates. If it finds none, the context is a
//! counterexample, and the main instance's core names the clashing predicates. The candidate
//! instance running out of candidates proves the check.
//!
//! **The depth bound.** BatSat exposes no budget setter through rustsat, so the bound is enforced
//! by our own `Callbacks`: every learnt clause (one per conflict) is counted in a counter shared by
//! both instances, and `stop()` interrupts the solver once the count reaches
//! [`Bound::max_conflicts`]. Refinement rounds are limited by [`Bound::max_refinements`]. The
//! bound is cumulative over the whole admission, so it also bounds core minimisation.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use rustsat::solvers::{Solve, SolveIncremental, SolverResult};
use rustsat::types::{Lit, TernaryVal, Var};
use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::encode::{decode, fixing_lits, AttrVars, Bit, Encoder, Slot};
use crate::types::{AttrIdx, Formula};

/// The prover named in admissions and rejections.
pub const PROVER: &str =
    "batsat-0.6.0 via rustsat-0.7 (cdcl; integers bit-blasted exactly over declared ranges)";

/// The depth bound: how much solver work an admission may spend before it is undecided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    /// Total learnt clauses (= conflicts) across every solver call of the admission.
    pub max_conflicts: u64,
    /// Counterexample-guided refinement rounds for the no-stranded-context check.
    pub max_refinements: u32,
}

impl Default for Bound {
    fn default() -> Bound {
        Bound {
            max_conflicts: 200_000,
            max_refinements: 4_096,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} conflicts, {} refinement rounds",
            self.max_conflicts, self.max_refinements
        )
    }
}

/// The three admission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    Consistency,
    LivePreconditions,
    NoStrandedContext,
}

impl Check {
    pub const ALL: [Check; 3] = [
        Check::Consistency,
        Check::LivePreconditions,
        Check::NoStrandedContext,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Consistency => "consistency",
            Check::LivePreconditions => "live-preconditions",
            Check::NoStrandedContext => "no-stranded-context",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width flags (`{check:<20}`) align columns.
        f.pad(self.as_str())
    }
}

/// What the solver work cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conflicts: u64,
    pub solver_calls: u64,
    pub refinements: u32,
    pub n_vars: u32,
    pub n_clauses: u64,
}

/// Evidence that all three checks were proven. Only [`prove`] constructs one.
#[derive(Debug, Clone)]
pub struct Proof {
    digest: [u8; 32],
    witness: Vec<(String, serde_json::Value)>,
    stats: Stats,
    bound: Bound,
    n_preconditions: usize,
    n_context: usize,
}

impl Proof {
    /// The digest of the bundle this proof is about.
    pub fn bundle_digest(&self) -> [u8; 32] {
        self.digest
    }

    /// A satisfying assignment of every attribute (check 1's model).
    pub fn witness(&self) -> &[(String, serde_json::Value)] {
        &self.witness
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn bound(&self) -> Bound {
        self.bound
    }

    /// One line per check, as recorded in the signed statement.
    pub fn check_lines(&self) -> Vec<(Check, String)> {
        let live = match self.n_preconditions {
            0 => "proven: no predicate has a precondition".to_string(),
            n => format!("proven: all {n} preconditions satisfiable with every predicate"),
        };
        let context = match self.n_context {
            0 => "proven: no context attributes, so consistency covers every request".to_string(),
            n => format!(
                "proven: every assignment of {n} context attributes has satisfying outputs ({} refinement rounds)",
                self.stats.refinements
            ),
        };
        vec![
            (
                Check::Consistency,
                "proven: satisfiable, witness recorded".to_string(),
            ),
            (Check::LivePreconditions, live),
            (Check::NoStrandedContext, context),
        ]
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The check is refuted; `core` is a minimal set of clashing predicate ids (bundle order).
    Refuted {
        /// For live preconditions: the predicate whose `when` can never hold.
        predicate: Option<String>,
        core: Vec<String>,
        /// False only if the budget ran out while shrinking (the core is then still a core).
        core_minimal: bool,
        /// For stranded contexts: the context values (attribute, value) that have no outputs.
        counterexample: Vec<(String, String)>,
    },
    /// The bound ran out before the check was decided.
    Undecided { detail: String },
}

/// A failed admission: which check, what was found, and what the solver spent.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub check: Check,
    pub finding: Finding,
    pub stats: Stats,
    pub bound: Bound,
}

impl Rejection {
    /// The offending predicate ids (empty when undecided).
    pub fn core(&self) -> &[String] {
        match &self.finding {
            Finding::Refuted { core, .. } => core,
            Finding::Undecided { .. } => &[],
        }
    }

    pub fn is_undecided(&self) -> bool {
        matches!(self.finding, Finding::Undecided { .. })
    }
}

fn id_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.finding {
            Finding::Undecided { detail } => write!(
                f,
                "{}: undecided within the bound ({}): {detail}; undecided bundles are never admitted",
                self.check, self.bound
            ),
            Finding::Refuted {
                predicate,
                core,
                core_minimal,
                counterexample,
            } => {
                let minimal = if *core_minimal { "minimal core" } else { "core (not shrunk to minimal: budget ran out)" };
                match (self.check, predicate) {
                    (Check::LivePreconditions, Some(p)) => write!(
                        f,
                        "{}: the precondition of `{p}` can never hold together with the other predicates ({minimal}: {})",
                        self.check,
                        id_list(core)
                    ),
                    (Check::NoStrandedContext, _) => {
                        let ctx = counterexample
                            .iter()
                            .map(|(a, v)| format!("{a} = {v}"))
                            .collect::<Vec<_>>()
                            .join(", ");
                        write!(
                            f,
                            "{}: context {ctx} has no output satisfying every predicate ({minimal}: {})",
                            self.check,
                            id_list(core)
                        )
                    }
                    _ => write!(f, "{}: the predicates contradict each other ({minimal}: {})", self.check, id_list(core)),
                }
            }
        }
    }
}

/// Counts learnt clauses in a counter shared by both instances; stops at the limit.
#[derive(Default)]
struct Budget {
    used: Rc<Cell<u64>>,
    limit: u64,
}

impl batsat::Callbacks for Budget {
    fn on_new_clause(&mut self, _clause: &[batsat::Lit], kind: batsat::ClauseKind) {
        if kind == batsat::ClauseKind::Learnt {
            self.used.set(self.used.get().saturating_add(1));
        }
    }

    fn stop(&self) -> bool {
        self.used.get() >= self.limit
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Sat,
    Unsat,
    Unknown,
}

/// One solver instance with its encoder.
struct Instance {
    solver: rustsat_batsat::Solver<Budget>,
    encoder: Encoder,
}

impl Instance {
    fn new(used: &Rc<Cell<u64>>, limit: u64) -> Instance {
        let mut solver = rustsat_batsat::Solver::<Budget>::default();
        let callbacks = solver.batsat_mut().cb_mut();
        callbacks.used = Rc::clone(used);
        callbacks.limit = limit;
        Instance {
            solver,
            encoder: Encoder::default(),
        }
    }

    /// Moves pending clauses into the solver and creates every variable.
    fn flush(&mut self) -> Result<(), ()> {
        if self.encoder.n_vars() > 0 {
            self.solver
                .reserve(Var::new(self.encoder.n_vars() - 1))
                .map_err(|_| ())?;
        }
        for clause in std::mem::take(&mut self.encoder.clauses) {
            let clause: rustsat::types::Clause = clause.into_iter().collect();
            self.solver.add_clause(clause).map_err(|_| ())?;
        }
        Ok(())
    }

    fn solve(&mut self, assumptions: &[Lit], stats: &mut Stats) -> Answer {
        stats.solver_calls += 1;
        if self.flush().is_err() {
            return Answer::Unknown;
        }
        match self.solver.solve_assumps(assumptions) {
            Ok(SolverResult::Sat) => Answer::Sat,
            Ok(SolverResult::Unsat) => Answer::Unsat,
            _ => Answer::Unknown,
        }
    }

    fn truth(&self, lit: Lit) -> bool {
        matches!(self.solver.lit_val(lit), Ok(TernaryVal::True))
    }

    fn core_vars(&mut self) -> Vec<Var> {
        self.solver
            .core()
            .map(|lits| lits.into_iter().map(|l| l.var()).collect())
            .unwrap_or_default()
    }
}

struct Gate<'b> {
    bundle: &'b Bundle,
    bound: Bound,
    used: Rc<Cell<u64>>,
    main: Instance,
    vars: Vec<AttrVars>,
    selectors: Vec<Lit>,
    selector_of: HashMap<Var, usize>,
    when_bits: Vec<Bit>,
    formulas: Vec<Formula>,
    stats: Stats,
}

/// Runs the three checks. `Ok` only if all are proven within `bound`.
pub fn prove(bundle: &Bundle, bound: &Bound) -> Result<Proof, Box<Rejection>> {
    let used = Rc::new(Cell::new(0u64));
    let mut main = Instance::new(&used, bound.max_conflicts);
    let vars: Vec<AttrVars> = bundle
        .vocabulary
        .attributes
        .iter()
        .map(|attr| main.encoder.alloc_attr(attr))
        .collect();
    let formulas: Vec<Formula> = bundle.predicates.iter().map(|p| p.formula()).collect();
    let mut selectors = Vec::with_capacity(formulas.len());
    let mut selector_of = HashMap::new();
    let mut when_bits = Vec::with_capacity(formulas.len());
    {
        let slots: Vec<Slot<'_>> = vars.iter().map(Slot::Vars).collect();
        for (idx, (pred, formula)) in bundle.predicates.iter().zip(&formulas).enumerate() {
            let bit = main.encoder.formula(formula, &slots);
            let selector = main.encoder.fresh();
            main.encoder.imply(selector, bit);
            selectors.push(selector);
            selector_of.insert(selector.var(), idx);
            when_bits.push(main.encoder.formula(&pred.when, &slots));
        }
    }
    let mut gate = Gate {
        bundle,
        bound: *bound,
        used,
        main,
        vars,
        selectors,
        selector_of,
        when_bits,
        formulas,
        stats: Stats::default(),
    };
    gate.stats.n_vars = gate.main.encoder.n_vars();
    gate.stats.n_clauses = gate.main.encoder.clauses.len() as u64;
    let witness = gate.consistency()?;
    let n_preconditions = gate.live_preconditions(&witness)?;
    let n_context = gate.no_stranded_context()?;
    let stats = gate.finish_stats();
    let witness = bundle
        .vocabulary
        .attributes
        .iter()
        .zip(&witness)
        .map(|(attr, value)| (attr.name.clone(), attr.json_value(*value)))
        .collect();
    Ok(Proof {
        digest: bundle.digest(),
        witness,
        stats,
        bound: *bound,
        n_preconditions,
        n_context,
    })
}

impl Gate<'_> {
    fn finish_stats(&mut self) -> Stats {
        self.stats.conflicts = self.used.get();
        self.stats
    }

    fn reject(&mut self, check: Check, finding: Finding) -> Box<Rejection> {
        Box::new(Rejection {
            check,
            finding,
            stats: self.finish_stats(),
            bound: self.bound,
        })
    }

    fn undecided(&mut self, check: Check, detail: &str) -> Box<Rejection> {
        let detail = format!("{detail} after {} conflicts", self.used.get());
        self.reject(check, Finding::Undecided { detail })
    }

    fn model(&self) -> Vec<i64> {
        let truth = |lit: Lit| self.main.truth(lit);
        self.vars.iter().map(|v| decode(v, &truth)).collect()
    }

    fn selector_lits(&self, preds: &[usize]) -> Vec<Lit> {
        preds.iter().map(|p| self.selectors[*p]).collect()
    }

    /// Shrinks the last unsat answer's core to a minimal one (deletion-based, refined by the
    /// solver's own cores). `hard` are assumptions that always stay (a precondition, a context).
    fn minimal_core(&mut self, hard: &[Lit]) -> (Vec<usize>, bool) {
        let mut remaining: Vec<usize> = self
            .main
            .core_vars()
            .into_iter()
            .filter_map(|v| self.selector_of.get(&v).copied())
            .collect();
        remaining.sort_unstable();
        remaining.dedup();
        let mut confirmed: Vec<usize> = Vec::new();
        let mut minimal = true;
        while let Some(candidate) = remaining.pop() {
            let mut assumptions = hard.to_vec();
            assumptions.extend(self.selector_lits(&confirmed));
            assumptions.extend(self.selector_lits(&remaining));
            match self.main.solve(&assumptions, &mut self.stats) {
                Answer::Unsat => {
                    let core: Vec<usize> = self
                        .main
                        .core_vars()
                        .into_iter()
                        .filter_map(|v| self.selector_of.get(&v).copied())
                        .collect();
                    remaining.retain(|p| core.contains(p));
                }
                Answer::Sat => confirmed.push(candidate),
                Answer::Unknown => {
                    confirmed.push(candidate);
                    minimal = false;
                }
            }
        }
        confirmed.sort_unstable();
        (confirmed, minimal)
    }

    fn ids(&self, preds: &[usize]) -> Vec<String> {
        preds
            .iter()
            .map(|p| self.bundle.predicates[*p].id.clone())
            .collect()
    }

    fn consistency(&mut self) -> Result<Vec<i64>, Box<Rejection>> {
        let all = self.selectors.clone();
        match self.main.solve(&all, &mut self.stats) {
            Answer::Sat => Ok(self.model()),
            Answer::Unknown => {
                Err(self.undecided(Check::Consistency, "satisfiability not decided"))
            }
            Answer::Unsat => {
                let (core, core_minimal) = self.minimal_core(&[]);
                let core = self.ids(&core);
                Err(self.reject(
                    Check::Consistency,
                    Finding::Refuted {
                        predicate: None,
                        core,
                        core_minimal,
                        counterexample: Vec::new(),
                    },
                ))
            }
        }
    }

    /// Returns the number of non-trivial preconditions proven live.
    fn live_preconditions(&mut self, witness: &[i64]) -> Result<usize, Box<Rejection>> {
        let mut models = vec![witness.to_vec()];
        let mut n_checked = 0;
        for idx in 0..self.bundle.predicates.len() {
            let pred = &self.bundle.predicates[idx];
            if !pred.has_when() {
                continue;
            }
            n_checked += 1;
            // Any model of all predicates in which `when` holds proves this one live.
            if models.iter().any(|m| pred.when.eval(m)) {
                continue;
            }
            let dead = |gate: &mut Self, mut core: Vec<usize>, core_minimal: bool| {
                if !core.contains(&idx) {
                    core.push(idx);
                    core.sort_unstable();
                }
                let predicate = Some(gate.bundle.predicates[idx].id.clone());
                let core = gate.ids(&core);
                gate.reject(
                    Check::LivePreconditions,
                    Finding::Refuted {
                        predicate,
                        core,
                        core_minimal,
                        counterexample: Vec::new(),
                    },
                )
            };
            let when_lit = match self.when_bits[idx] {
                Bit::Const(false) => return Err(dead(self, Vec::new(), true)),
                Bit::Const(true) => continue,
                Bit::Lit(lit) => lit,
            };
            let mut assumptions = self.selectors.clone();
            assumptions.push(when_lit);
            match self.main.solve(&assumptions, &mut self.stats) {
                Answer::Sat => models.push(self.model()),
                Answer::Unknown => {
                    let detail = format!("precondition of `{}` not decided", pred.id);
                    return Err(self.undecided(Check::LivePreconditions, &detail));
                }
                Answer::Unsat => {
                    // The dead predicate itself is always reported, so it stays assumed while
                    // the others are shrunk: the core is {p} plus a minimal set of others.
                    let hard = [when_lit, self.selectors[idx]];
                    let (core, minimal) = self.minimal_core(&hard);
                    return Err(dead(self, core, minimal));
                }
            }
        }
        Ok(n_checked)
    }

    /// Returns the number of context attributes.
    fn no_stranded_context(&mut self) -> Result<usize, Box<Rejection>> {
        let context: Vec<AttrIdx> = self
            .bundle
            .vocabulary
            .attributes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.context)
            .map(|(idx, _)| idx as AttrIdx)
            .collect();
        if context.is_empty() {
            // ∀ over nothing: check 1 already proved ∃ outputs.
            return Ok(0);
        }
        let mut candidates = Instance::new(&self.used, self.bound.max_conflicts);
        let attributes = &self.bundle.vocabulary.attributes;
        let candidate_vars: Vec<Option<AttrVars>> = attributes
            .iter()
            .map(|a| a.context.then(|| candidates.encoder.alloc_attr(a)))
            .collect();
        loop {
            if self.stats.refinements >= self.bound.max_refinements {
                let detail = format!("{} refinement rounds exhausted", self.stats.refinements);
                return Err(self.undecided(Check::NoStrandedContext, &detail));
            }
            let truth_vars = &candidate_vars;
            match candidates.solve(&[], &mut self.stats) {
                Answer::Unsat => return Ok(context.len()),
                Answer::Unknown => {
                    return Err(
                        self.undecided(Check::NoStrandedContext, "candidate contexts not decided")
                    )
                }
                Answer::Sat => {}
            }
            let ctx_values: Vec<(AttrIdx, i64)> = context
                .iter()
                .filter_map(|idx| {
                    truth_vars[*idx as usize]
                        .as_ref()
                        .map(|v| (*idx, decode(v, &|lit| candidates.truth(lit))))
                })
                .collect();
            let mut fixing = Vec::new();
            for (idx, value) in &ctx_values {
                fixing.extend(fixing_lits(&self.vars[*idx as usize], *value));
            }
            let mut assumptions = self.selectors.clone();
            assumptions.extend(&fixing);
            match self.main.solve(&assumptions, &mut self.stats) {
                Answer::Unknown => {
                    return Err(self.undecided(
                        Check::NoStrandedContext,
                        "outputs for a candidate context not decided",
                    ))
                }
                Answer::Sat => {
                    let outputs = self.model();
                    let slots: Vec<Slot<'_>> = candidate_vars
                        .iter()
                        .zip(&outputs)
                        .map(|(vars, value)| match vars {
                            Some(v) => Slot::Vars(v),
                            None => Slot::Fixed(*value),
                        })
                        .collect();
                    let mut bits = Vec::with_capacity(self.formulas.len());
                    for formula in &self.formulas {
                        let bit = candidates.encoder.formula(formula, &slots);
                        if bit != Bit::Const(true) {
                            bits.push(bit);
                        }
                    }
                    // Only contexts where these outputs fail some predicate remain candidates.
                    let covered = candidates.encoder.and_many(bits);
                    candidates.encoder.assert_bit(!covered);
                    self.stats.refinements += 1;
                }
                Answer::Unsat => {
                    let (core, core_minimal) = self.minimal_core(&fixing);
                    let mut mentioned = Vec::new();
                    for p in &core {
                        self.formulas[*p].attributes(&mut mentioned);
                    }
                    let shown: Vec<&(AttrIdx, i64)> = ctx_values
                        .iter()
                        .filter(|(idx, _)| mentioned.contains(idx))
                        .collect();
                    let shown = if shown.is_empty() {
                        ctx_values.iter().collect()
                    } else {
                        shown
                    };
                    let counterexample = shown
                        .into_iter()
                        .map(|(idx, value)| {
                            let attr = &attributes[*idx as usize];
                            (attr.name.clone(), attr.display_value(*value))
                        })
                        .collect();
                    let core = self.ids(&core);
                    return Err(self.reject(
                        Check::NoStrandedContext,
                        Finding::Refuted {
                            predicate: None,
                            core,
                            core_minimal,
                            counterexample,
                        },
                    ));
                }
            }
        }
    }
}
