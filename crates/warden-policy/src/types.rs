//! The vocabulary (typed attributes) and the type checker that turns parsed trees into formulas.
//!
//! A [`Formula`] is what both the solver encoding and the evaluator consume: boolean structure
//! over three kinds of atoms (linear integer constraints, enum membership, set membership). Integer
//! expressions are normalised to `Σ coeff·attr + constant`, so `2 * (a + 1) - a` and `a + 2` are the
//! same atom. Every atom's arithmetic is bounded ([`MAX_MAGNITUDE`]) so the solver's bit widths and
//! the evaluator's `i64` arithmetic can never overflow.

use std::collections::BTreeMap;

use crate::syntax::{CmpOp, Expr, ExprKind};

/// The most variants an enum, or elements a set, may declare (they are bitmasks in the evaluator).
pub const MAX_MEMBERS: usize = 64;

/// Bound on `|value|` of any integer sub-expression over the declared ranges.
pub const MAX_MAGNITUDE: i128 = 1 << 48;

/// Index of an attribute in the vocabulary (declaration order is sorted by name).
pub type AttrIdx = u32;

/// The type of an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrType {
    Enum(Vec<String>),
    Int { lo: i64, hi: i64 },
    Set(Vec<String>),
}

/// A declared attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub ty: AttrType,
    /// Fixed by the request (caller, request) rather than decided by generation.
    pub context: bool,
}

impl Attribute {
    /// Human-readable value of the attribute under the evaluator's value encoding.
    pub fn display_value(&self, value: i64) -> String {
        match &self.ty {
            AttrType::Enum(variants) => variants
                .get(value as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{value}")),
            AttrType::Int { .. } => value.to_string(),
            AttrType::Set(elements) => {
                let members: Vec<&str> = elements
                    .iter()
                    .enumerate()
                    .filter(|(idx, _)| (value as u64) >> idx & 1 == 1)
                    .map(|(_, e)| e.as_str())
                    .collect();
                format!("{{{}}}", members.join(", "))
            }
        }
    }

    /// The value as JSON (enum: string, int: number, set: array of strings).
    pub fn json_value(&self, value: i64) -> serde_json::Value {
        match &self.ty {
            AttrType::Enum(variants) => {
                serde_json::Value::String(variants.get(value as usize).cloned().unwrap_or_default())
            }
            AttrType::Int { .. } => serde_json::Value::from(value),
            AttrType::Set(elements) => serde_json::Value::Array(
                elements
                    .iter()
                    .enumerate()
                    .filter(|(idx, _)| (value as u64) >> idx & 1 == 1)
                    .map(|(_, e)| serde_json::Value::String(e.clone()))
                    .collect(),
            ),
        }
    }
}

/// The attributes a bundle's predicates may use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vocabulary {
    pub attributes: Vec<Attribute>,
    by_name: BTreeMap<String, AttrIdx>,
}

impl Vocabulary {
    /// Builds a vocabulary; attributes are kept sorted by name.
    pub fn new(mut attributes: Vec<Attribute>) -> Vocabulary {
        attributes.sort_by(|a, b| a.name.cmp(&b.name));
        let by_name = attributes
            .iter()
            .enumerate()
            .map(|(idx, attr)| (attr.name.clone(), idx as AttrIdx))
            .collect();
        Vocabulary {
            attributes,
            by_name,
        }
    }

    pub fn lookup(&self, name: &str) -> Option<AttrIdx> {
        self.by_name.get(name).copied()
    }

    pub fn attr(&self, idx: AttrIdx) -> &Attribute {
        &self.attributes[idx as usize]
    }

    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }
}

/// Linear atoms are normalised to `Σ terms + constant <= 0` or `== 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinOp {
    LeZero,
    EqZero,
}

/// An atomic constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    Linear {
        terms: Vec<(AttrIdx, i64)>,
        constant: i64,
        op: LinOp,
    },
    /// The enum attribute's value is one of the variants in `mask` (bit i = variant i).
    EnumIn { attr: AttrIdx, mask: u64 },
    /// The set attribute contains element `element`.
    SetContains { attr: AttrIdx, element: u32 },
}

/// A typed boolean formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formula {
    Const(bool),
    Atom(Atom),
    Not(Box<Formula>),
    And(Vec<Formula>),
    Or(Vec<Formula>),
}

impl Formula {
    /// Evaluates under a full assignment (values in the evaluator's encoding, by attribute index).
    pub fn eval(&self, values: &[i64]) -> bool {
        match self {
            Formula::Const(value) => *value,
            Formula::Atom(atom) => atom.eval(values),
            Formula::Not(inner) => !inner.eval(values),
            Formula::And(items) => items.iter().all(|f| f.eval(values)),
            Formula::Or(items) => items.iter().any(|f| f.eval(values)),
        }
    }

    /// Adds every attribute the formula mentions to `out`.
    pub fn attributes(&self, out: &mut Vec<AttrIdx>) {
        match self {
            Formula::Const(_) => {}
            Formula::Atom(Atom::Linear { terms, .. }) => out.extend(terms.iter().map(|t| t.0)),
            Formula::Atom(Atom::EnumIn { attr, .. } | Atom::SetContains { attr, .. }) => {
                out.push(*attr)
            }
            Formula::Not(inner) => inner.attributes(out),
            Formula::And(items) | Formula::Or(items) => {
                items.iter().for_each(|f| f.attributes(out))
            }
        }
    }
}

impl Atom {
    pub fn eval(&self, values: &[i64]) -> bool {
        match self {
            Atom::Linear {
                terms,
                constant,
                op,
            } => {
                let sum = terms.iter().fold(*constant, |acc, (attr, coeff)| {
                    acc + coeff * values[*attr as usize]
                });
                match op {
                    LinOp::LeZero => sum <= 0,
                    LinOp::EqZero => sum == 0,
                }
            }
            Atom::EnumIn { attr, mask } => (mask >> values[*attr as usize]) & 1 == 1,
            Atom::SetContains { attr, element } => {
                (values[*attr as usize] as u64 >> element) & 1 == 1
            }
        }
    }
}

/// A type error at a byte range of the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    pub offset: usize,
    pub message: String,
}

fn err<T>(expr: &Expr, message: impl Into<String>) -> Result<T, TypeError> {
    Err(TypeError {
        offset: expr.start,
        message: message.into(),
    })
}

/// An integer expression: `Σ coeff·attr + constant`, with its range over the declared domains.
#[derive(Debug, Clone)]
struct Linear {
    terms: BTreeMap<AttrIdx, i64>,
    constant: i64,
}

fn checked(value: Option<i64>, expr: &Expr) -> Result<i64, TypeError> {
    match value {
        Some(v) if (v as i128).abs() <= MAX_MAGNITUDE => Ok(v),
        _ => err(expr, "integer expression is too large"),
    }
}

impl Linear {
    fn constant(value: i64) -> Linear {
        Linear {
            terms: BTreeMap::new(),
            constant: value,
        }
    }

    fn scaled(self, factor: i64, expr: &Expr) -> Result<Linear, TypeError> {
        let mut terms = BTreeMap::new();
        for (attr, coeff) in self.terms {
            let c = checked(coeff.checked_mul(factor), expr)?;
            if c != 0 {
                terms.insert(attr, c);
            }
        }
        Ok(Linear {
            terms,
            constant: checked(self.constant.checked_mul(factor), expr)?,
        })
    }

    fn plus(mut self, other: Linear, expr: &Expr) -> Result<Linear, TypeError> {
        for (attr, coeff) in other.terms {
            let entry = self.terms.entry(attr).or_insert(0);
            *entry = checked(entry.checked_add(coeff), expr)?;
            if *entry == 0 {
                self.terms.remove(&attr);
            }
        }
        self.constant = checked(self.constant.checked_add(other.constant), expr)?;
        Ok(self)
    }

    /// The magnitude bound over the declared ranges, checked against [`MAX_MAGNITUDE`].
    fn check_range(&self, vocab: &Vocabulary, expr: &Expr) -> Result<(), TypeError> {
        let mut lo = self.constant as i128;
        let mut hi = self.constant as i128;
        for (attr, coeff) in &self.terms {
            if let AttrType::Int { lo: a, hi: b } = vocab.attr(*attr).ty {
                let (x, y) = (*coeff as i128 * a as i128, *coeff as i128 * b as i128);
                lo += x.min(y);
                hi += x.max(y);
            }
        }
        if lo.abs() > MAX_MAGNITUDE || hi.abs() > MAX_MAGNITUDE {
            return err(
                expr,
                "integer expression can exceed 2^48 over the declared ranges",
            );
        }
        Ok(())
    }
}

/// Type-checks a parsed expression as a boolean formula over `vocab`.
pub fn check_bool(expr: &Expr, vocab: &Vocabulary) -> Result<Formula, TypeError> {
    match &expr.kind {
        ExprKind::Bool(value) => Ok(Formula::Const(*value)),
        ExprKind::Paren(inner) => check_bool(inner, vocab),
        ExprKind::Not(inner) => Ok(Formula::Not(Box::new(check_bool(inner, vocab)?))),
        ExprKind::And(items) => Ok(Formula::And(
            items
                .iter()
                .map(|item| check_bool(item, vocab))
                .collect::<Result<_, _>>()?,
        )),
        ExprKind::Or(items) => Ok(Formula::Or(
            items
                .iter()
                .map(|item| check_bool(item, vocab))
                .collect::<Result<_, _>>()?,
        )),
        ExprKind::Implies(lhs, rhs) => Ok(Formula::Or(vec![
            Formula::Not(Box::new(check_bool(lhs, vocab)?)),
            check_bool(rhs, vocab)?,
        ])),
        ExprKind::Cmp(op, lhs, rhs) => check_comparison(expr, *op, lhs, rhs, vocab),
        ExprKind::In(lhs, rhs) => {
            let (attr, variants) = enum_attr(lhs, vocab)?;
            let ExprKind::List(items) = &rhs.kind else {
                return err(
                    rhs,
                    "expected a list of quoted values like ['a', 'b'] after `in`",
                );
            };
            let mut mask = 0u64;
            for item in items {
                mask |= 1 << variant_index(item, attr, variants, vocab)?;
            }
            Ok(Formula::Atom(Atom::EnumIn { attr, mask }))
        }
        ExprKind::Contains(lhs, rhs) => {
            let attr = match &lhs.kind {
                ExprKind::Attr(name) => lookup(lhs, name, vocab)?,
                _ => return err(lhs, "expected a set attribute before `contains`"),
            };
            let AttrType::Set(elements) = &vocab.attr(attr).ty else {
                return err(
                    lhs,
                    format!(
                        "`{}` is not a set attribute: `contains` needs a set",
                        vocab.attr(attr).name
                    ),
                );
            };
            let ExprKind::Str(value) = &rhs.kind else {
                return err(rhs, "expected a quoted set element after `contains`");
            };
            match elements.iter().position(|e| e == value) {
                Some(element) => Ok(Formula::Atom(Atom::SetContains {
                    attr,
                    element: element as u32,
                })),
                None => err(
                    rhs,
                    format!(
                        "'{value}' is not an element of `{}` (expected one of {})",
                        vocab.attr(attr).name,
                        quoted_list(elements)
                    ),
                ),
            }
        }
        ExprKind::Attr(name) => {
            let attr = lookup(expr, name, vocab)?;
            err(
                expr,
                format!(
                    "expected a condition, found {} attribute `{name}` (compare it with something)",
                    type_word(&vocab.attr(attr).ty)
                ),
            )
        }
        ExprKind::Int(_)
        | ExprKind::Add(..)
        | ExprKind::Sub(..)
        | ExprKind::Mul(..)
        | ExprKind::Neg(_) => err(expr, "expected a condition, found an integer expression"),
        ExprKind::Str(_) => err(expr, "expected a condition, found a quoted value"),
        ExprKind::List(_) => err(expr, "expected a condition, found a list"),
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn type_word(ty: &AttrType) -> &'static str {
    match ty {
        AttrType::Enum(_) => "enum",
        AttrType::Int { .. } => "integer",
        AttrType::Set(_) => "set",
    }
}

fn lookup(expr: &Expr, name: &str, vocab: &Vocabulary) -> Result<AttrIdx, TypeError> {
    vocab.lookup(name).ok_or(()).or_else(|_| {
        err(
            expr,
            format!("unknown attribute `{name}` (not declared in [vocabulary])"),
        )
    })
}

fn unparen(expr: &Expr) -> &Expr {
    match &expr.kind {
        ExprKind::Paren(inner) => unparen(inner),
        _ => expr,
    }
}

fn enum_attr<'v>(expr: &Expr, vocab: &'v Vocabulary) -> Result<(AttrIdx, &'v [String]), TypeError> {
    let expr = unparen(expr);
    let ExprKind::Attr(name) = &expr.kind else {
        return err(expr, "expected an enum attribute before `in`");
    };
    let attr = lookup(expr, name, vocab)?;
    match &vocab.attr(attr).ty {
        AttrType::Enum(variants) => Ok((attr, variants)),
        other => err(
            expr,
            format!(
                "`{name}` is a {} attribute: `in [..]` needs an enum",
                type_word(other)
            ),
        ),
    }
}

fn variant_index(
    item: &Expr,
    attr: AttrIdx,
    variants: &[String],
    vocab: &Vocabulary,
) -> Result<u32, TypeError> {
    let ExprKind::Str(value) = &item.kind else {
        return err(
            item,
            format!("expected a quoted value of `{}`", vocab.attr(attr).name),
        );
    };
    match variants.iter().position(|v| v == value) {
        Some(idx) => Ok(idx as u32),
        None => err(
            item,
            format!(
                "'{value}' is not a value of `{}` (expected one of {})",
                vocab.attr(attr).name,
                quoted_list(variants)
            ),
        ),
    }
}

fn check_comparison(
    expr: &Expr,
    op: CmpOp,
    lhs: &Expr,
    rhs: &Expr,
    vocab: &Vocabulary,
) -> Result<Formula, TypeError> {
    // Enum equality: `attr == 'value'` or `'value' == attr`.
    let enum_side = |side: &Expr| match &unparen(side).kind {
        ExprKind::Attr(name) => vocab
            .lookup(name)
            .filter(|idx| matches!(vocab.attr(*idx).ty, AttrType::Enum(_))),
        _ => None,
    };
    let (enum_attr_idx, value_side) = match (enum_side(lhs), enum_side(rhs)) {
        (Some(attr), None) => (Some(attr), rhs),
        (None, Some(attr)) => (Some(attr), lhs),
        (Some(_), Some(_)) => {
            return err(
                rhs,
                "expected a quoted value: comparing two enum attributes is not supported",
            )
        }
        (None, None) => (None, rhs),
    };
    if let Some(attr) = enum_attr_idx {
        let AttrType::Enum(variants) = &vocab.attr(attr).ty else {
            return err(expr, "internal: enum attribute lost its type");
        };
        let value = unparen(value_side);
        let idx = variant_index(value, attr, variants, vocab)?;
        let atom = Formula::Atom(Atom::EnumIn {
            attr,
            mask: 1 << idx,
        });
        return match op {
            CmpOp::Eq => Ok(atom),
            CmpOp::Ne => Ok(Formula::Not(Box::new(atom))),
            other => err(
                expr,
                format!("enum values are unordered: expected `==`, `!=` or `in`, found `{other}`"),
            ),
        };
    }
    let left = check_int(lhs, vocab)?;
    let right = check_int(rhs, vocab)?;
    // Normalise to `diff (<=|==) 0`.
    let minus =
        |a: Linear, b: Linear| -> Result<Linear, TypeError> { a.plus(b.scaled(-1, expr)?, expr) };
    let (diff, lin_op, negate) = match op {
        CmpOp::Le => (minus(left, right)?, LinOp::LeZero, false),
        CmpOp::Lt => (
            minus(left, right)?.plus(Linear::constant(1), expr)?,
            LinOp::LeZero,
            false,
        ),
        CmpOp::Ge => (minus(right, left)?, LinOp::LeZero, false),
        CmpOp::Gt => (
            minus(right, left)?.plus(Linear::constant(1), expr)?,
            LinOp::LeZero,
            false,
        ),
        CmpOp::Eq => (minus(left, right)?, LinOp::EqZero, false),
        CmpOp::Ne => (minus(left, right)?, LinOp::EqZero, true),
    };
    diff.check_range(vocab, expr)?;
    let atom = if diff.terms.is_empty() {
        Formula::Const(match lin_op {
            LinOp::LeZero => diff.constant <= 0,
            LinOp::EqZero => diff.constant == 0,
        })
    } else {
        Formula::Atom(Atom::Linear {
            terms: diff.terms.into_iter().collect(),
            constant: diff.constant,
            op: lin_op,
        })
    };
    Ok(if negate {
        Formula::Not(Box::new(atom))
    } else {
        atom
    })
}

fn check_int(expr: &Expr, vocab: &Vocabulary) -> Result<Linear, TypeError> {
    let linear = match &expr.kind {
        ExprKind::Int(value) => Linear::constant(*value),
        ExprKind::Paren(inner) => check_int(inner, vocab)?,
        ExprKind::Attr(name) => {
            let attr = lookup(expr, name, vocab)?;
            match &vocab.attr(attr).ty {
                AttrType::Int { .. } => Linear {
                    terms: BTreeMap::from([(attr, 1)]),
                    constant: 0,
                },
                other => {
                    return err(
                        expr,
                        format!(
                            "expected an integer, found {} attribute `{name}`",
                            type_word(other)
                        ),
                    )
                }
            }
        }
        ExprKind::Neg(inner) => check_int(inner, vocab)?.scaled(-1, expr)?,
        ExprKind::Add(lhs, rhs) => check_int(lhs, vocab)?.plus(check_int(rhs, vocab)?, expr)?,
        ExprKind::Sub(lhs, rhs) => {
            check_int(lhs, vocab)?.plus(check_int(rhs, vocab)?.scaled(-1, expr)?, expr)?
        }
        ExprKind::Mul(lhs, rhs) => {
            let (a, b) = (check_int(lhs, vocab)?, check_int(rhs, vocab)?);
            if a.terms.is_empty() {
                b.scaled(a.constant, expr)?
            } else if b.terms.is_empty() {
                a.scaled(b.constant, expr)?
            } else {
                return err(expr, "expected a constant on one side of `*` (only multiplication by a constant is linear)");
            }
        }
        ExprKind::Str(_) => return err(expr, "expected an integer, found a quoted value"),
        ExprKind::Bool(_) => return err(expr, "expected an integer, found a boolean"),
        ExprKind::List(_) => return err(expr, "expected an integer, found a list"),
        ExprKind::Not(_)
        | ExprKind::And(..)
        | ExprKind::Or(..)
        | ExprKind::Implies(..)
        | ExprKind::Cmp(..)
        | ExprKind::In(..)
        | ExprKind::Contains(..) => return err(expr, "expected an integer, found a condition"),
    };
    linear.check_range(vocab, expr)?;
    Ok(linear)
}
