//! The expression language: lexer and precedence-climbing parser producing an untyped tree.
//!
//! The parser knows nothing of the vocabulary; [`crate::types`] gives the tree its meaning. It
//! reports byte offsets into the expression text; the bundle loader maps them to file lines and
//! columns. Nesting is bounded ([`MAX_DEPTH`]) so hostile text cannot exhaust the stack.

use std::fmt;

/// The deepest nesting accepted. Each parenthesis, `not`, unary `-`, `=>`, arithmetic operator
/// (`+`, `-`, `*`: chains are left-nested) and each `and`/`or` chain (one level however long)
/// is a level.
pub const MAX_DEPTH: usize = 128;

/// The largest integer literal accepted, in absolute value.
pub const MAX_LITERAL: i64 = 1 << 31;

/// A syntax error at a byte offset of the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Int(i64),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Plus,
    Minus,
    Star,
    Cmp(CmpOp),
    Implies,
    And,
    Or,
    Not,
    In,
    Contains,
    True,
    False,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(name) => write!(f, "attribute `{name}`"),
            Tok::Int(value) => write!(f, "integer {value}"),
            Tok::Str(value) => write!(f, "string '{value}'"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Plus => f.write_str("`+`"),
            Tok::Minus => f.write_str("`-`"),
            Tok::Star => f.write_str("`*`"),
            Tok::Cmp(op) => write!(f, "`{op}`"),
            Tok::Implies => f.write_str("`=>`"),
            Tok::And => f.write_str("`and`"),
            Tok::Or => f.write_str("`or`"),
            Tok::Not => f.write_str("`not`"),
            Tok::In => f.write_str("`in`"),
            Tok::Contains => f.write_str("`contains`"),
            Tok::True => f.write_str("`true`"),
            Tok::False => f.write_str("`false`"),
            Tok::End => f.write_str("end of expression"),
        }
    }
}

/// Integer comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Ge => ">=",
            CmpOp::Gt => ">",
        })
    }
}

/// A node of the untyped tree with the byte span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    Attr(String),
    Int(i64),
    Str(String),
    Bool(bool),
    List(Vec<Expr>),
    Not(Box<Expr>),
    /// A flat chain `a and b and …` (two or more items): one nesting level however long.
    And(Vec<Expr>),
    /// A flat chain `a or b or …` (two or more items): one nesting level however long.
    Or(Vec<Expr>),
    Implies(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    Contains(Box<Expr>, Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// Parentheses are kept so that canonical text preserves the author's grouping.
    Paren(Box<Expr>),
}

/// True for characters allowed in enum values, set elements and quoted strings: printable,
/// without quotes or backslashes, so canonical text never needs escaping.
pub fn is_plain_value_char(c: char) -> bool {
    !c.is_control() && c != '\'' && c != '"' && c != '\\'
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let c = bytes[pos];
        let start = pos;
        if c.is_ascii_whitespace() {
            pos += 1;
            continue;
        }
        let two = |next: u8| bytes.get(pos + 1) == Some(&next);
        let (tok, len) = match c {
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'<' if two(b'=') => (Tok::Cmp(CmpOp::Le), 2),
            b'<' => (Tok::Cmp(CmpOp::Lt), 1),
            b'>' if two(b'=') => (Tok::Cmp(CmpOp::Ge), 2),
            b'>' => (Tok::Cmp(CmpOp::Gt), 1),
            b'=' if two(b'=') => (Tok::Cmp(CmpOp::Eq), 2),
            b'=' if two(b'>') => (Tok::Implies, 2),
            b'!' if two(b'=') => (Tok::Cmp(CmpOp::Ne), 2),
            b'\'' | b'"' => {
                let quote = c;
                let body_start = pos + 1;
                let mut end = body_start;
                loop {
                    match bytes.get(end) {
                        None => {
                            return Err(SyntaxError {
                                offset: start,
                                message: "unterminated string: expected a closing quote".into(),
                            })
                        }
                        Some(&b) if b == quote => break,
                        Some(_) => end += 1,
                    }
                }
                let body = &text[body_start..end];
                if let Some((idx, bad)) = body
                    .char_indices()
                    .find(|(_, ch)| !is_plain_value_char(*ch))
                {
                    return Err(SyntaxError {
                        offset: body_start + idx,
                        message: format!(
                            "character {bad:?} is not allowed in a quoted value (no quotes, backslashes or control characters)"
                        ),
                    });
                }
                (Tok::Str(body.to_string()), end + 1 - start)
            }
            b'0'..=b'9' => {
                let mut end = pos;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let digits = &text[pos..end];
                let value = digits
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v <= MAX_LITERAL)
                    .ok_or_else(|| SyntaxError {
                        offset: start,
                        message: format!(
                            "integer {digits} is too large (the limit is {MAX_LITERAL})"
                        ),
                    })?;
                if end < bytes.len() && (bytes[end].is_ascii_alphabetic() || bytes[end] == b'_') {
                    return Err(SyntaxError {
                        offset: end,
                        message: "expected an operator after the integer".into(),
                    });
                }
                (Tok::Int(value), end - pos)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = pos;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'_'
                        || bytes[end] == b'.')
                {
                    end += 1;
                }
                let word = &text[pos..end];
                let tok = match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "in" => Tok::In,
                    "contains" => Tok::Contains,
                    "true" => Tok::True,
                    "false" => Tok::False,
                    _ => {
                        if word.ends_with('.') || word.contains("..") {
                            return Err(SyntaxError {
                                offset: start,
                                message: format!("malformed attribute name `{word}`"),
                            });
                        }
                        Tok::Ident(word.to_string())
                    }
                };
                (tok, end - pos)
            }
            _ => {
                let ch = text[pos..].chars().next().unwrap_or('?');
                return Err(SyntaxError {
                    offset: start,
                    message: format!("unexpected character {ch:?}"),
                });
            }
        };
        tokens.push((tok, start));
        pos += len;
    }
    tokens.push((Tok::End, text.len()));
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    idx: usize,
    depth: usize,
}

/// Parses one boolean-or-integer expression; the whole text must be consumed.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let tokens = lex(text)?;
    let mut parser = Parser {
        tokens,
        idx: 0,
        depth: 0,
    };
    if parser.peek() == &Tok::End {
        return Err(SyntaxError {
            offset: 0,
            message: "expected an expression, found nothing".into(),
        });
    }
    let expr = parser.implies()?;
    match parser.peek() {
        Tok::End => Ok(expr),
        other => Err(SyntaxError {
            offset: parser.offset(),
            message: format!("expected an operator or end of expression, found {other}"),
        }),
    }
}

fn node(kind: ExprKind, start: usize, end: usize) -> Expr {
    Expr { kind, start, end }
}

/// An n-ary node over `items` (at least one), spanning from the first item to the last.
fn chain(items: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    let start = items.first().map_or(0, |item| item.start);
    let end = items.last().map_or(0, |item| item.end);
    node(make(items), start, end)
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.idx.min(self.tokens.len() - 1)].0
    }

    fn offset(&self) -> usize {
        self.tokens[self.idx.min(self.tokens.len() - 1)].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let tok = self.tokens[self.idx.min(self.tokens.len() - 1)].clone();
        if self.idx < self.tokens.len() - 1 {
            self.idx += 1;
        }
        tok
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                offset: self.offset(),
                message: format!("expression nested deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, SyntaxError> {
        if *self.peek() == want {
            let (_, at) = self.bump();
            Ok(at)
        } else {
            Err(SyntaxError {
                offset: self.offset(),
                message: format!("expected {what}, found {}", self.peek()),
            })
        }
    }

    /// `a => b` is right-associative and binds loosest; each `=>` is one nesting level.
    fn implies(&mut self) -> Result<Expr, SyntaxError> {
        let lhs = self.or()?;
        if *self.peek() != Tok::Implies {
            return Ok(lhs);
        }
        self.enter()?;
        self.bump();
        let rhs = self.implies()?;
        self.leave();
        let (start, end) = (lhs.start, rhs.end);
        Ok(node(
            ExprKind::Implies(Box::new(lhs), Box::new(rhs)),
            start,
            end,
        ))
    }

    /// A chain of `or` is one n-ary node and one nesting level, however many items it has.
    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let first = self.and()?;
        if *self.peek() != Tok::Or {
            return Ok(first);
        }
        self.enter()?;
        let mut items = vec![first];
        while *self.peek() == Tok::Or {
            self.bump();
            items.push(self.and()?);
        }
        self.leave();
        Ok(chain(items, ExprKind::Or))
    }

    /// A chain of `and` is one n-ary node and one nesting level, however many items it has.
    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let first = self.not()?;
        if *self.peek() != Tok::And {
            return Ok(first);
        }
        self.enter()?;
        let mut items = vec![first];
        while *self.peek() == Tok::And {
            self.bump();
            items.push(self.not()?);
        }
        self.leave();
        Ok(chain(items, ExprKind::And))
    }

    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if *self.peek() == Tok::Not {
            self.enter()?;
            let (_, start) = self.bump();
            let inner = self.not()?;
            let end = inner.end;
            self.leave();
            return Ok(node(ExprKind::Not(Box::new(inner)), start, end));
        }
        self.comparison()
    }

    /// Comparisons do not chain: `a < b < c` is an error.
    fn comparison(&mut self) -> Result<Expr, SyntaxError> {
        let lhs = self.sum()?;
        let result = match self.peek().clone() {
            Tok::Cmp(op) => {
                self.bump();
                let rhs = self.sum()?;
                let (start, end) = (lhs.start, rhs.end);
                node(ExprKind::Cmp(op, Box::new(lhs), Box::new(rhs)), start, end)
            }
            Tok::In => {
                self.bump();
                let rhs = self.sum()?;
                let (start, end) = (lhs.start, rhs.end);
                node(ExprKind::In(Box::new(lhs), Box::new(rhs)), start, end)
            }
            Tok::Contains => {
                self.bump();
                let rhs = self.sum()?;
                let (start, end) = (lhs.start, rhs.end);
                node(ExprKind::Contains(Box::new(lhs), Box::new(rhs)), start, end)
            }
            _ => return Ok(lhs),
        };
        if let Tok::Cmp(_) | Tok::In | Tok::Contains = self.peek() {
            return Err(SyntaxError {
                offset: self.offset(),
                message: format!(
                    "comparisons do not chain: expected `and`, `or`, `)` or end of expression, found {}",
                    self.peek()
                ),
            });
        }
        Ok(result)
    }

    fn sum(&mut self) -> Result<Expr, SyntaxError> {
        let entered = self.depth;
        let mut lhs = self.product()?;
        loop {
            let add = match self.peek() {
                Tok::Plus => true,
                Tok::Minus => false,
                _ => {
                    self.depth = entered;
                    return Ok(lhs);
                }
            };
            self.enter()?;
            self.bump();
            let rhs = self.product()?;
            let (start, end) = (lhs.start, rhs.end);
            let kind = if add {
                ExprKind::Add(Box::new(lhs), Box::new(rhs))
            } else {
                ExprKind::Sub(Box::new(lhs), Box::new(rhs))
            };
            lhs = node(kind, start, end);
        }
    }

    fn product(&mut self) -> Result<Expr, SyntaxError> {
        let entered = self.depth;
        let mut lhs = self.unary()?;
        while *self.peek() == Tok::Star {
            self.enter()?;
            self.bump();
            let rhs = self.unary()?;
            let (start, end) = (lhs.start, rhs.end);
            lhs = node(ExprKind::Mul(Box::new(lhs), Box::new(rhs)), start, end);
        }
        self.depth = entered;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if *self.peek() == Tok::Minus {
            self.enter()?;
            let (_, start) = self.bump();
            let inner = self.unary()?;
            let end = inner.end;
            self.leave();
            return Ok(node(ExprKind::Neg(Box::new(inner)), start, end));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, SyntaxError> {
        let (tok, start) = self.bump();
        let end_of = |len: usize| start + len;
        match tok {
            Tok::Ident(name) => {
                let len = name.len();
                Ok(node(ExprKind::Attr(name), start, end_of(len)))
            }
            Tok::Int(value) => {
                let len = value.to_string().len();
                Ok(node(ExprKind::Int(value), start, end_of(len)))
            }
            Tok::Str(value) => {
                let len = value.len() + 2;
                Ok(node(ExprKind::Str(value), start, end_of(len)))
            }
            Tok::True => Ok(node(ExprKind::Bool(true), start, end_of(4))),
            Tok::False => Ok(node(ExprKind::Bool(false), start, end_of(5))),
            Tok::LParen => {
                self.enter()?;
                let inner = self.implies()?;
                let close = self.expect(Tok::RParen, "`)`")?;
                self.leave();
                Ok(node(ExprKind::Paren(Box::new(inner)), start, close + 1))
            }
            Tok::LBracket => {
                let mut items = Vec::new();
                if *self.peek() == Tok::RBracket {
                    let (_, close) = self.bump();
                    return Ok(node(ExprKind::List(items), start, close + 1));
                }
                loop {
                    items.push(self.sum()?);
                    match self.peek() {
                        Tok::Comma => {
                            self.bump();
                        }
                        Tok::RBracket => {
                            let (_, close) = self.bump();
                            return Ok(node(ExprKind::List(items), start, close + 1));
                        }
                        other => {
                            return Err(SyntaxError {
                                offset: self.offset(),
                                message: format!("expected `,` or `]` in a list, found {other}"),
                            })
                        }
                    }
                }
            }
            other => Err(SyntaxError {
                offset: start,
                message: format!("expected an attribute, a literal, `not` or `(`, found {other}"),
            }),
        }
    }
}

/// Prints a tree back as canonical text: single spaces around operators, single-quoted values,
/// the author's parentheses kept and no others added (the tree already encodes precedence, and
/// parenthesised sub-trees print their parentheses).
pub fn to_canonical(expr: &Expr) -> String {
    let mut out = String::new();
    write_canonical(expr, &mut out);
    out
}

fn write_canonical(expr: &Expr, out: &mut String) {
    let binary = |out: &mut String, lhs: &Expr, op: &str, rhs: &Expr| {
        write_canonical(lhs, out);
        out.push(' ');
        out.push_str(op);
        out.push(' ');
        write_canonical(rhs, out);
    };
    match &expr.kind {
        ExprKind::Attr(name) => out.push_str(name),
        ExprKind::Int(value) => out.push_str(&value.to_string()),
        ExprKind::Str(value) => {
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        }
        ExprKind::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        ExprKind::List(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push_str(", ");
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        ExprKind::Not(inner) => {
            out.push_str("not ");
            write_canonical(inner, out);
        }
        ExprKind::And(items) | ExprKind::Or(items) => {
            let op = if matches!(expr.kind, ExprKind::And(_)) {
                " and "
            } else {
                " or "
            };
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push_str(op);
                }
                write_canonical(item, out);
            }
        }
        ExprKind::Implies(lhs, rhs) => binary(out, lhs, "=>", rhs),
        ExprKind::Cmp(op, lhs, rhs) => binary(out, lhs, &op.to_string(), rhs),
        ExprKind::In(lhs, rhs) => binary(out, lhs, "in", rhs),
        ExprKind::Contains(lhs, rhs) => binary(out, lhs, "contains", rhs),
        ExprKind::Add(lhs, rhs) => binary(out, lhs, "+", rhs),
        ExprKind::Sub(lhs, rhs) => binary(out, lhs, "-", rhs),
        ExprKind::Mul(lhs, rhs) => binary(out, lhs, "*", rhs),
        ExprKind::Neg(inner) => {
            out.push('-');
            write_canonical(inner, out);
        }
        ExprKind::Paren(inner) => {
            out.push('(');
            write_canonical(inner, out);
            out.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> String {
        to_canonical(&parse(text).unwrap())
    }

    #[test]
    fn canonical_text_normalises_spacing_and_quotes() {
        assert_eq!(
            shape("caller.tier in[\"verified\",'internal']or output.tokens<=64"),
            "caller.tier in ['verified', 'internal'] or output.tokens <= 64"
        );
        assert_eq!(shape("not(a contains 'pii')"), "not (a contains 'pii')");
    }

    #[test]
    fn precedence_binds_and_tighter_than_or_and_implies_loosest() {
        let expr = parse("a == 1 or b == 2 and c == 3 => d == 4").unwrap();
        let ExprKind::Implies(lhs, _) = expr.kind else {
            panic!("expected => at the root")
        };
        let ExprKind::Or(items) = lhs.kind else {
            panic!("expected or under =>")
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[1].kind, ExprKind::And(and) if and.len() == 2));
    }

    #[test]
    fn errors_name_the_offset_and_what_was_expected() {
        let err = parse("output.tokens <= ").unwrap_err();
        assert_eq!(err.offset, 17);
        assert_eq!(
            err.message,
            "expected an attribute, a literal, `not` or `(`, found end of expression"
        );
        let err = parse("a < b < c").unwrap_err();
        assert_eq!(err.offset, 6);
        assert!(err.message.starts_with("comparisons do not chain"));
        let err = parse("(a == 1").unwrap_err();
        assert_eq!(err.message, "expected `)`, found end of expression");
        let err = parse("a == 'unterminated").unwrap_err();
        assert_eq!(
            (err.offset, err.message.as_str()),
            (5, "unterminated string: expected a closing quote")
        );
        let err = parse("a # 3").unwrap_err();
        assert_eq!(
            (err.offset, err.message.as_str()),
            (2, "unexpected character '#'")
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("{}a == 1{}", "(".repeat(500), ")".repeat(500));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nested deeper than 128"));
        let text = format!("{}a", "not ".repeat(10_000));
        assert!(parse(&text).is_err());
        // Arithmetic chains count one level per operator (the type checker folds them recursively).
        let text = format!("x == {}", vec!["1"; 10_000].join(" + "));
        assert!(parse(&text).is_err());
    }

    /// Regression: a flat 129-term `and` was refused as "nested deeper than 128 levels"; a chain
    /// of `and`/`or` is one level however long, while 129 real levels are still refused.
    #[test]
    fn a_flat_chain_of_and_or_is_one_level_not_one_per_term() {
        let flat = vec!["a == 1"; 129].join(" and ");
        let expr = parse(&flat).unwrap();
        assert!(matches!(&expr.kind, ExprKind::And(items) if items.len() == 129));
        assert_eq!(to_canonical(&expr), flat);
        let wide = vec!["a == 1 and b == 2"; 10_000].join(" or ");
        let expr = parse(&wide).unwrap();
        assert!(matches!(&expr.kind, ExprKind::Or(items) if items.len() == 10_000));
        assert_eq!(to_canonical(&expr), wide);
        // Real nesting still counts: 128 parentheses are accepted, 129 refused.
        let deep = |levels: usize| format!("{}a == 1{}", "(".repeat(levels), ")".repeat(levels));
        assert!(parse(&deep(128)).is_ok());
        let err = parse(&deep(129)).unwrap_err();
        assert!(err.message.contains("nested deeper than 128"), "{err:?}");
    }
}
