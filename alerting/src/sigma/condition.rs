//! A Sigma `condition` to an [`Expr`] over the rule's search identifiers: `and`, `or`, `not`,
//! parentheses, `1 of PATTERN`, `all of PATTERN`, `1 of them`, `all of them` (`*` is the
//! wildcard of a pattern; `them` leaves out identifiers starting with `_`), by recursive
//! descent with Sigma's precedence (or < and < not < `x of` < parentheses). The nesting is
//! at most [`MAX_NESTING`] deep, and the expression built at most [`MAX_WEIGHT`] heavy, so
//! a condition that names a large selection many times is refused before it grows.
//!
//! The deprecated aggregation after `|` is read by [`aggregation`]: `count() by F > N`,
//! `count(F) by G >= N`; other aggregations and `near` are refused by name.

use super::expr::Expr;

/// Longest condition read.
pub const MAX_CONDITION_BYTES: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub const MAX_NESTING: usize = 32;
/// Heaviest expression a condition may build ([`Expr::weight`]).
pub const MAX_WEIGHT: usize = 1 << 20;

/// The expression of `condition` (without an aggregation) over `identifiers`, in the order
/// the rule writes them.
pub fn parse(condition: &str, identifiers: &[(String, Expr)]) -> Result<Expr, String> {
    if condition.len() > MAX_CONDITION_BYTES {
        return Err(format!(
            "the condition is longer than {MAX_CONDITION_BYTES} bytes"
        ));
    }
    let mut parser = Parser {
        tokens: tokens(condition),
        position: 0,
        identifiers,
        weight: 0,
    };
    if parser.tokens.is_empty() {
        return Err("the condition is empty".to_owned());
    }
    let expr = parser.or(0)?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(format!(
            "unexpected `{}` in the condition",
            token.escape_debug()
        )),
    }
}

/// Words, with each parenthesis a token of its own.
fn tokens(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (idx, c) in text.char_indices() {
        if c.is_whitespace() || c == '(' || c == ')' {
            if let Some(begin) = start.take() {
                tokens.push(&text[begin..idx]);
            }
            if c == '(' || c == ')' {
                tokens.push(&text[idx..idx + 1]);
            }
        } else if start.is_none() {
            start = Some(idx);
        }
    }
    if let Some(begin) = start {
        tokens.push(&text[begin..]);
    }
    tokens
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    position: usize,
    identifiers: &'a [(String, Expr)],
    weight: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.position).copied()
    }

    fn is_word(&self, word: &str) -> bool {
        self.peek()
            .is_some_and(|token| token.eq_ignore_ascii_case(word))
    }

    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        let mut parts = vec![self.and(depth)?];
        while self.is_word("or") {
            self.position += 1;
            parts.push(self.and(depth)?);
        }
        Ok(Expr::any(parts))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut parts = vec![self.not(depth)?];
        while self.is_word("and") {
            self.position += 1;
            parts.push(self.not(depth)?);
        }
        Ok(Expr::all(parts))
    }

    fn not(&mut self, depth: usize) -> Result<Expr, String> {
        if self.is_word("not") {
            if depth >= MAX_NESTING {
                return Err(format!("the condition nests more than {MAX_NESTING} deep"));
            }
            self.position += 1;
            return Ok(Expr::negate(self.not(depth + 1)?));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, String> {
        let Some(token) = self.peek() else {
            return Err("the condition ends too early".to_owned());
        };
        self.position += 1;
        if token == "(" {
            if depth >= MAX_NESTING {
                return Err(format!("the condition nests more than {MAX_NESTING} deep"));
            }
            let expr = self.or(depth + 1)?;
            if self.peek() != Some(")") {
                return Err("a `(` is not closed in the condition".to_owned());
            }
            self.position += 1;
            return Ok(expr);
        }
        if self.is_word("of") {
            self.position += 1;
            let all = match token.to_ascii_lowercase().as_str() {
                "1" | "any" => false,
                "all" => true,
                other => {
                    return Err(format!(
                        "`{} of` is not supported (only `1 of` and `all of`)",
                        other.escape_debug()
                    ));
                }
            };
            let Some(pattern) = self.peek() else {
                return Err(format!("`{token} of` names no identifier pattern"));
            };
            self.position += 1;
            let matched: Vec<Expr> = self
                .identifiers
                .iter()
                .filter(|(name, _)| {
                    if pattern == "them" {
                        !name.starts_with('_')
                    } else {
                        glob(pattern, name)
                    }
                })
                .map(|(_, expr)| self.take(expr))
                .collect::<Result<_, _>>()?;
            if matched.is_empty() {
                return Err(format!(
                    "`{token} of {}` matches no search identifier",
                    pattern.escape_debug()
                ));
            }
            return Ok(if all {
                Expr::all(matched)
            } else {
                Expr::any(matched)
            });
        }
        if [")", "and", "or", "of", "not"]
            .iter()
            .any(|word| token.eq_ignore_ascii_case(word))
        {
            return Err(format!("unexpected `{token}` in the condition"));
        }
        let Some((_, expr)) = self.identifiers.iter().find(|(name, _)| name == token) else {
            return Err(format!(
                "the condition names `{}`, which is not a search identifier of the detection",
                token.chars().take(64).collect::<String>().escape_debug()
            ));
        };
        self.take(expr)
    }

    /// A copy of an identifier's expression, counted against [`MAX_WEIGHT`].
    fn take(&mut self, expr: &Expr) -> Result<Expr, String> {
        self.weight = self.weight.saturating_add(expr.weight());
        if self.weight > MAX_WEIGHT {
            return Err("the condition builds too large an expression".to_owned());
        }
        Ok(expr.clone())
    }
}

/// Whether `name` matches `pattern`, where `*` is any run of characters.
pub(super) fn glob(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The deprecated aggregation of a condition (after `|`).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    /// `count(F)`: distinct values of F (Sigma's name).
    pub field: Option<String>,
    /// `by G`: Sigma's names.
    pub group_by: Vec<String>,
    /// The count that makes it fire.
    pub threshold: u64,
}

/// Reads `count() by F > N` and its kin.
pub fn aggregation(text: &str) -> Result<Aggregation, String> {
    let text = text.trim();
    let function: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if function != "count" {
        let shown: String = text.chars().take(32).collect();
        return Err(if function == "near" {
            "the aggregation `near` is not supported".to_owned()
        } else if function.is_empty() {
            format!("`| {}` is not an aggregation", shown.escape_debug())
        } else {
            format!(
                "the aggregation `{}()` is not supported (only count)",
                function.escape_debug()
            )
        });
    }
    let syntax = || {
        format!(
            "`| {}` is not an aggregation like `count() by F > N`",
            text.chars().take(64).collect::<String>().escape_debug()
        )
    };
    let rest = text["count".len()..].trim_start();
    let rest = rest.strip_prefix('(').ok_or_else(syntax)?;
    let (inner, rest) = rest.split_once(')').ok_or_else(syntax)?;
    let field = Some(inner.trim().to_owned()).filter(|field| !field.is_empty());
    let rest = rest.trim();
    let operator_at = rest.find(['<', '>', '=', '!']).ok_or_else(syntax)?;
    let (group, comparison) = rest.split_at(operator_at);
    let group = group.trim();
    let group_by = if group.is_empty() {
        Vec::new()
    } else {
        let names = group
            .strip_prefix("by")
            .filter(|names| names.starts_with(char::is_whitespace))
            .ok_or_else(syntax)?;
        names
            .split(',')
            .map(|name| {
                let name = name.trim();
                if name.is_empty() || name.contains(char::is_whitespace) {
                    Err(syntax())
                } else {
                    Ok(name.to_owned())
                }
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let (operator, number) = [">=", "<=", "==", "!=", ">", "<", "="]
        .iter()
        .find_map(|operator| {
            comparison
                .strip_prefix(operator)
                .map(|number| (*operator, number.trim()))
        })
        .ok_or_else(syntax)?;
    let n: u64 = number.parse().map_err(|_| syntax())?;
    let threshold = match operator {
        ">" => n.saturating_add(1),
        ">=" if n > 0 => n,
        ">=" => return Err("`>= 0` always holds".to_owned()),
        other => {
            return Err(format!(
                "the comparison `{other}` is not supported (a threshold fires when a count reaches a bound: > or >=)"
            ));
        }
    };
    Ok(Aggregation {
        field,
        group_by,
        threshold,
    })
}
