//! CNF encoding of formulas: Tseitin gates with constant folding and structural hashing, attributes
//! encoded exactly over their declared domains.
//!
//! * enum with k values: k literals, exactly one true (pairwise at-most-one, k ≤ 64);
//! * int `[lo, hi]`: `x = lo + u`, `u` in unsigned binary with `⌈log2(hi-lo+1)⌉` bits and the
//!   domain constraint `u <= hi - lo` asserted, so every model decodes to an in-range value;
//! * set with n elements: one literal per element.
//!
//! A linear atom `Σ aᵢxᵢ + k ⋈ 0` is rewritten over the unsigned offsets `uᵢ = xᵢ - loᵢ` as
//! `P + K ⋈ N` with `P = Σ_{aᵢ>0} aᵢuᵢ`, `N = Σ_{aᵢ<0} |aᵢ|uᵢ` (both non-negative), then built with
//! ripple-carry adders, shift-and-add constant multiplication and an unsigned comparator. Widths
//! grow with each addition, so nothing ever wraps: the encoding is exact, not modular. Atoms over a
//! single attribute (the common `tokens <= 1024`) become one comparison against a constant.

use std::collections::HashMap;

use rustsat::types::Lit;

use crate::types::{Atom, AttrIdx, AttrType, Attribute, Formula, LinOp};

/// A literal or a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bit {
    Const(bool),
    Lit(Lit),
}

impl std::ops::Not for Bit {
    type Output = Bit;
    fn not(self) -> Bit {
        match self {
            Bit::Const(value) => Bit::Const(!value),
            Bit::Lit(lit) => Bit::Lit(!lit),
        }
    }
}

/// The literals of one attribute.
#[derive(Debug, Clone)]
pub(crate) enum AttrVars {
    Enum(Vec<Lit>),
    Int { lo: i64, bits: Vec<Lit> },
    Set(Vec<Lit>),
}

/// How each attribute appears in a formula being encoded: as literals, or fixed to a value
/// (in the evaluator's value encoding).
pub(crate) enum Slot<'a> {
    Vars(&'a AttrVars),
    Fixed(i64),
}

type AtomKey = (Vec<(AttrIdx, i64)>, i64, LinOp);

/// Accumulates clauses over fresh variables; the caller moves them into a solver.
#[derive(Default)]
pub(crate) struct Encoder {
    n_vars: u32,
    pub(crate) clauses: Vec<Vec<Lit>>,
    and_cache: HashMap<(Lit, Lit), Lit>,
    xor_cache: HashMap<(Lit, Lit), Lit>,
    atom_cache: HashMap<AtomKey, Bit>,
}

fn floor_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    -floor_div(-a, b)
}

impl Encoder {
    pub(crate) fn n_vars(&self) -> u32 {
        self.n_vars
    }

    pub(crate) fn fresh(&mut self) -> Lit {
        let lit = Lit::positive(self.n_vars);
        self.n_vars += 1;
        lit
    }

    fn clause(&mut self, lits: Vec<Lit>) {
        self.clauses.push(lits);
    }

    /// Asserts a bit (adds a unit clause, or an empty clause if it is constant false).
    pub(crate) fn assert_bit(&mut self, bit: Bit) {
        match bit {
            Bit::Const(true) => {}
            Bit::Const(false) => self.clause(Vec::new()),
            Bit::Lit(lit) => self.clause(vec![lit]),
        }
    }

    /// `selector → bit`.
    pub(crate) fn imply(&mut self, selector: Lit, bit: Bit) {
        match bit {
            Bit::Const(true) => {}
            Bit::Const(false) => self.clause(vec![!selector]),
            Bit::Lit(lit) => self.clause(vec![!selector, lit]),
        }
    }

    fn and2(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(false), _) | (_, Bit::Const(false)) => Bit::Const(false),
            (Bit::Const(true), other) | (other, Bit::Const(true)) => other,
            (Bit::Lit(x), Bit::Lit(y)) => {
                if x == y {
                    return a;
                }
                if x == !y {
                    return Bit::Const(false);
                }
                let key = if x < y { (x, y) } else { (y, x) };
                if let Some(g) = self.and_cache.get(&key) {
                    return Bit::Lit(*g);
                }
                let g = self.fresh();
                self.clause(vec![!g, x]);
                self.clause(vec![!g, y]);
                self.clause(vec![g, !x, !y]);
                self.and_cache.insert(key, g);
                Bit::Lit(g)
            }
        }
    }

    fn or2(&mut self, a: Bit, b: Bit) -> Bit {
        !self.and2(!a, !b)
    }

    fn xor2(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(c), other) | (other, Bit::Const(c)) => {
                if c {
                    !other
                } else {
                    other
                }
            }
            (Bit::Lit(x), Bit::Lit(y)) => {
                if x == y {
                    return Bit::Const(false);
                }
                if x == !y {
                    return Bit::Const(true);
                }
                // Normalise both inputs to positive polarity; each flip flips the output.
                let flip = x.is_neg() != y.is_neg();
                let (px, py) = (x.var().pos_lit(), y.var().pos_lit());
                let key = if px < py { (px, py) } else { (py, px) };
                let g = match self.xor_cache.get(&key) {
                    Some(g) => *g,
                    None => {
                        let g = self.fresh();
                        self.clause(vec![!g, px, py]);
                        self.clause(vec![!g, !px, !py]);
                        self.clause(vec![g, !px, py]);
                        self.clause(vec![g, px, !py]);
                        self.xor_cache.insert(key, g);
                        g
                    }
                };
                Bit::Lit(if flip { !g } else { g })
            }
        }
    }

    pub(crate) fn and_many(&mut self, bits: Vec<Bit>) -> Bit {
        let mut lits: Vec<Lit> = Vec::with_capacity(bits.len());
        for bit in bits {
            match bit {
                Bit::Const(false) => return Bit::Const(false),
                Bit::Const(true) => {}
                Bit::Lit(lit) => lits.push(lit),
            }
        }
        lits.sort();
        lits.dedup();
        if lits.windows(2).any(|w| w[0] == !w[1]) {
            return Bit::Const(false);
        }
        match lits.len() {
            0 => Bit::Const(true),
            1 => Bit::Lit(lits[0]),
            2 => self.and2(Bit::Lit(lits[0]), Bit::Lit(lits[1])),
            _ => {
                let g = self.fresh();
                let mut long = Vec::with_capacity(lits.len() + 1);
                long.push(g);
                for lit in &lits {
                    self.clause(vec![!g, *lit]);
                    long.push(!*lit);
                }
                self.clause(long);
                Bit::Lit(g)
            }
        }
    }

    pub(crate) fn or_many(&mut self, bits: Vec<Bit>) -> Bit {
        let negated = bits.into_iter().map(|b| !b).collect();
        !self.and_many(negated)
    }

    /// Allocates an attribute's literals and asserts its domain constraints.
    pub(crate) fn alloc_attr(&mut self, attr: &Attribute) -> AttrVars {
        match &attr.ty {
            AttrType::Enum(values) => {
                let lits: Vec<Lit> = values.iter().map(|_| self.fresh()).collect();
                self.clause(lits.clone());
                for i in 0..lits.len() {
                    for j in i + 1..lits.len() {
                        self.clause(vec![!lits[i], !lits[j]]);
                    }
                }
                AttrVars::Enum(lits)
            }
            AttrType::Int { lo, hi } => {
                let span = (*hi - *lo) as u64;
                let width = 64 - span.leading_zeros();
                let bits: Vec<Lit> = (0..width).map(|_| self.fresh()).collect();
                let as_bits: Vec<Bit> = bits.iter().map(|l| Bit::Lit(*l)).collect();
                let in_range = self.le(&as_bits, &const_bits(span));
                self.assert_bit(in_range);
                AttrVars::Int { lo: *lo, bits }
            }
            AttrType::Set(elements) => {
                AttrVars::Set(elements.iter().map(|_| self.fresh()).collect())
            }
        }
    }

    fn full_add(&mut self, a: Bit, b: Bit, carry: Bit) -> (Bit, Bit) {
        let ab = self.xor2(a, b);
        let sum = self.xor2(ab, carry);
        let both = self.and2(a, b);
        let propagate = self.and2(carry, ab);
        let carry_out = self.or2(both, propagate);
        (sum, carry_out)
    }

    fn add(&mut self, a: &[Bit], b: &[Bit]) -> Vec<Bit> {
        let width = a.len().max(b.len());
        let mut out = Vec::with_capacity(width + 1);
        let mut carry = Bit::Const(false);
        for i in 0..width {
            let x = a.get(i).copied().unwrap_or(Bit::Const(false));
            let y = b.get(i).copied().unwrap_or(Bit::Const(false));
            let (sum, next) = self.full_add(x, y, carry);
            out.push(sum);
            carry = next;
        }
        out.push(carry);
        trim(out)
    }

    fn mul_const(&mut self, a: &[Bit], factor: u64) -> Vec<Bit> {
        let mut acc: Vec<Bit> = Vec::new();
        for shift in 0..64 {
            if factor >> shift & 1 == 1 {
                let mut shifted = vec![Bit::Const(false); shift];
                shifted.extend_from_slice(a);
                acc = self.add(&acc, &shifted);
            }
        }
        acc
    }

    /// Unsigned `a <= b` (least significant bit first).
    fn le(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        let width = a.len().max(b.len());
        let mut result = Bit::Const(true);
        for i in 0..width {
            let x = a.get(i).copied().unwrap_or(Bit::Const(false));
            let y = b.get(i).copied().unwrap_or(Bit::Const(false));
            let less = self.and2(!x, y);
            let differ = self.xor2(x, y);
            let keep = self.and2(!differ, result);
            result = self.or2(less, keep);
        }
        result
    }

    fn eq(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        let width = a.len().max(b.len());
        let mut same = Vec::with_capacity(width);
        for i in 0..width {
            let x = a.get(i).copied().unwrap_or(Bit::Const(false));
            let y = b.get(i).copied().unwrap_or(Bit::Const(false));
            same.push(!self.xor2(x, y));
        }
        self.and_many(same)
    }

    /// Encodes a formula; attributes are literals or fixed values according to `slots`.
    pub(crate) fn formula(&mut self, formula: &Formula, slots: &[Slot<'_>]) -> Bit {
        match formula {
            Formula::Const(value) => Bit::Const(*value),
            Formula::Not(inner) => !self.formula(inner, slots),
            Formula::And(items) => {
                let mut bits = Vec::with_capacity(items.len());
                for item in items {
                    let bit = self.formula(item, slots);
                    if bit == Bit::Const(false) {
                        return bit;
                    }
                    bits.push(bit);
                }
                self.and_many(bits)
            }
            Formula::Or(items) => {
                let mut bits = Vec::with_capacity(items.len());
                for item in items {
                    let bit = self.formula(item, slots);
                    if bit == Bit::Const(true) {
                        return bit;
                    }
                    bits.push(bit);
                }
                self.or_many(bits)
            }
            Formula::Atom(atom) => self.atom(atom, slots),
        }
    }

    fn atom(&mut self, atom: &Atom, slots: &[Slot<'_>]) -> Bit {
        match atom {
            Atom::EnumIn { attr, mask } => match &slots[*attr as usize] {
                Slot::Fixed(value) => Bit::Const(mask >> value & 1 == 1),
                Slot::Vars(AttrVars::Enum(lits)) => {
                    let bits = lits
                        .iter()
                        .enumerate()
                        .filter(|(idx, _)| mask >> idx & 1 == 1)
                        .map(|(_, lit)| Bit::Lit(*lit))
                        .collect();
                    self.or_many(bits)
                }
                Slot::Vars(_) => Bit::Const(false),
            },
            Atom::SetContains { attr, element } => match &slots[*attr as usize] {
                Slot::Fixed(value) => Bit::Const((*value as u64) >> element & 1 == 1),
                Slot::Vars(AttrVars::Set(lits)) => Bit::Lit(lits[*element as usize]),
                Slot::Vars(_) => Bit::Const(false),
            },
            Atom::Linear {
                terms,
                constant,
                op,
            } => {
                let mut symbolic = Vec::with_capacity(terms.len());
                let mut k = *constant as i128;
                for (attr, coeff) in terms {
                    match &slots[*attr as usize] {
                        Slot::Fixed(value) => k += *coeff as i128 * *value as i128,
                        Slot::Vars(AttrVars::Int { lo, .. }) => {
                            k += *coeff as i128 * *lo as i128;
                            symbolic.push((*attr, *coeff));
                        }
                        Slot::Vars(_) => {}
                    }
                }
                let key: AtomKey = (symbolic, k as i64, *op);
                if let Some(bit) = self.atom_cache.get(&key) {
                    return *bit;
                }
                let bit = self.linear(&key.0, k, *op, slots);
                self.atom_cache.insert(key, bit);
                bit
            }
        }
    }

    /// `Σ coeff·u_attr + k ⋈ 0` over the unsigned offsets `u`.
    fn linear(&mut self, terms: &[(AttrIdx, i64)], k: i128, op: LinOp, slots: &[Slot<'_>]) -> Bit {
        let bits_of = |attr: AttrIdx| -> Vec<Bit> {
            match &slots[attr as usize] {
                Slot::Vars(AttrVars::Int { bits, .. }) => {
                    bits.iter().map(|l| Bit::Lit(*l)).collect()
                }
                _ => Vec::new(),
            }
        };
        if terms.is_empty() {
            return Bit::Const(match op {
                LinOp::LeZero => k <= 0,
                LinOp::EqZero => k == 0,
            });
        }
        if let [(attr, coeff)] = terms {
            let u = bits_of(*attr);
            let max = (1i128 << u.len()) - 1;
            let a = *coeff as i128;
            return match op {
                LinOp::LeZero if a > 0 => {
                    let t = floor_div(-k, a);
                    if t < 0 {
                        Bit::Const(false)
                    } else if t >= max {
                        Bit::Const(true)
                    } else {
                        self.le(&u, &const_bits(t as u64))
                    }
                }
                LinOp::LeZero => {
                    // |a|·u >= k  ⇔  u >= ⌈k/|a|⌉
                    let t = ceil_div(k, -a);
                    if t <= 0 {
                        Bit::Const(true)
                    } else if t > max {
                        Bit::Const(false)
                    } else {
                        !self.le(&u, &const_bits((t - 1) as u64))
                    }
                }
                LinOp::EqZero => {
                    if (-k) % a != 0 {
                        return Bit::Const(false);
                    }
                    let t = -k / a;
                    if t < 0 || t > max {
                        Bit::Const(false)
                    } else {
                        self.eq(&u, &const_bits(t as u64))
                    }
                }
            };
        }
        let mut positive: Vec<Bit> = Vec::new();
        let mut negative: Vec<Bit> = Vec::new();
        for (attr, coeff) in terms {
            let scaled = self.mul_const(&bits_of(*attr), coeff.unsigned_abs());
            if *coeff > 0 {
                positive = self.add(&positive, &scaled);
            } else {
                negative = self.add(&negative, &scaled);
            }
        }
        let k_bits = const_bits(k.unsigned_abs() as u64);
        if k >= 0 {
            positive = self.add(&positive, &k_bits);
        } else {
            negative = self.add(&negative, &k_bits);
        }
        match op {
            LinOp::LeZero => self.le(&positive, &negative),
            LinOp::EqZero => self.eq(&positive, &negative),
        }
    }
}

fn trim(mut bits: Vec<Bit>) -> Vec<Bit> {
    while bits.last() == Some(&Bit::Const(false)) {
        bits.pop();
    }
    bits
}

fn const_bits(value: u64) -> Vec<Bit> {
    (0..64 - value.leading_zeros())
        .map(|i| Bit::Const(value >> i & 1 == 1))
        .collect()
}

/// Literals fixing an attribute to `value` (used as solver assumptions).
pub(crate) fn fixing_lits(vars: &AttrVars, value: i64) -> Vec<Lit> {
    match vars {
        AttrVars::Enum(lits) => lits
            .iter()
            .enumerate()
            .map(|(idx, lit)| if idx as i64 == value { *lit } else { !*lit })
            .collect(),
        AttrVars::Int { lo, bits } => {
            let u = (value - lo) as u64;
            bits.iter()
                .enumerate()
                .map(|(i, lit)| if u >> i & 1 == 1 { *lit } else { !*lit })
                .collect()
        }
        AttrVars::Set(lits) => lits
            .iter()
            .enumerate()
            .map(|(i, lit)| {
                if (value as u64) >> i & 1 == 1 {
                    *lit
                } else {
                    !*lit
                }
            })
            .collect(),
    }
}

/// Decodes an attribute's value from a model (`truth(lit)`).
pub(crate) fn decode(vars: &AttrVars, truth: &dyn Fn(Lit) -> bool) -> i64 {
    match vars {
        AttrVars::Enum(lits) => lits.iter().position(|l| truth(*l)).unwrap_or(0) as i64,
        AttrVars::Int { lo, bits } => {
            lo + bits
                .iter()
                .enumerate()
                .filter(|(_, l)| truth(**l))
                .map(|(i, _)| 1i64 << i)
                .sum::<i64>()
        }
        AttrVars::Set(lits) => lits
            .iter()
            .enumerate()
            .filter(|(_, l)| truth(**l))
            .map(|(i, _)| 1i64 << i)
            .sum(),
    }
}
