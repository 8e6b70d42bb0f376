//! The YAML of Sigma files, read into plain [`Node`]s with bounds: at most [`MAX_BYTES`] of
//! text, [`MAX_DOCUMENTS`] documents, [`MAX_DEPTH`] levels and [`MAX_NODES`] nodes, keys
//! that are text and appear once, and no aliases (`*name`) or tags (`!tag`), which Sigma
//! rules do not use and which are how YAML bombs are made. The parser's events are read one
//! at a time, so hostile input stops at the first bound it crosses.
//!
//! Scalars keep their text and whether they were plain (unquoted): `null`, `true` and `42`
//! mean something only unquoted, and only where a Sigma key says so ([`Scalar::is_null`]).

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Largest Sigma file read.
pub const MAX_BYTES: usize = 256 * 1024;
/// Most documents (`---`) in one file.
pub const MAX_DOCUMENTS: usize = 100;
/// Deepest nesting of lists and maps.
pub const MAX_DEPTH: usize = 16;
/// Most nodes (scalars, lists, maps) in one file.
pub const MAX_NODES: usize = 100_000;

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar(Scalar),
    List(Vec<Node>),
    /// Keys in the order written, each once.
    Map(Vec<(String, Node)>),
}

/// A scalar's text, and whether it was written without quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub plain: bool,
}

impl Scalar {
    /// YAML's null: `null`, `~` or nothing, unquoted.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// YAML's booleans, unquoted.
    pub fn as_bool(&self) -> Option<bool> {
        match (self.plain, self.text.as_str()) {
            (true, "true" | "True" | "TRUE") => Some(true),
            (true, "false" | "False" | "FALSE") => Some(false),
            _ => None,
        }
    }
}

impl Node {
    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(scalar) if scalar.is_null() => "null",
            Node::Scalar(_) => "a scalar",
            Node::List(_) => "a list",
            Node::Map(_) => "a map",
        }
    }

    /// The value of `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// The text of a scalar that is not null.
    pub fn text(&self) -> Option<&str> {
        match self {
            Node::Scalar(scalar) if !scalar.is_null() => Some(&scalar.text),
            _ => None,
        }
    }

    /// Whether this is null (or an empty value).
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(scalar) if scalar.is_null())
    }
}

/// A list or map being read, with the key waiting for its value.
enum Open {
    List(Vec<Node>),
    Map(Vec<(String, Node)>, Option<String>),
}

/// Reads every document of `text`; null documents (an empty one after a final `---`) are
/// left out. The error says what is wrong and on which line.
pub fn documents(text: &str) -> Result<Vec<Node>, String> {
    if text.len() > MAX_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_BYTES} a Sigma file may have",
            text.len()
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut n_nodes = 0_usize;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|error| format!("invalid YAML: {error}"))?;
        let line = mark.line();
        let node = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {
                continue;
            }
            Event::Alias(_) => {
                return Err(format!(
                    "line {line}: YAML aliases (*name) are not supported"
                ));
            }
            Event::Scalar(_, _, _, Some(_))
            | Event::SequenceStart(_, Some(_))
            | Event::MappingStart(_, Some(_)) => {
                return Err(format!("line {line}: YAML tags (!tag) are not supported"));
            }
            Event::SequenceStart(_, None) | Event::MappingStart(_, None) => {
                n_nodes += 1;
                if open.len() >= MAX_DEPTH {
                    return Err(format!(
                        "line {line}: lists and maps nest more than {MAX_DEPTH} deep"
                    ));
                }
                if n_nodes > MAX_NODES {
                    return Err(format!("more than {MAX_NODES} YAML nodes"));
                }
                open.push(match event {
                    Event::SequenceStart(..) => Open::List(Vec::new()),
                    _ => Open::Map(Vec::new(), None),
                });
                continue;
            }
            Event::Scalar(text, style, _, None) => {
                n_nodes += 1;
                if n_nodes > MAX_NODES {
                    return Err(format!("more than {MAX_NODES} YAML nodes"));
                }
                Node::Scalar(Scalar {
                    text,
                    plain: style == TScalarStyle::Plain,
                })
            }
            Event::SequenceEnd | Event::MappingEnd => match open.pop() {
                Some(Open::List(items)) => Node::List(items),
                Some(Open::Map(entries, None)) => Node::Map(entries),
                // The parser pairs every start with its end, and a key with its value.
                Some(Open::Map(_, Some(key))) => {
                    return Err(format!(
                        "line {line}: the key `{}` has no value",
                        key.escape_debug()
                    ));
                }
                None => return Err(format!("line {line}: an end without a start")),
            },
        };
        match open.last_mut() {
            None => {
                if !node.is_null() {
                    if documents.len() == MAX_DOCUMENTS {
                        return Err(format!("more than {MAX_DOCUMENTS} YAML documents"));
                    }
                    documents.push(node);
                }
            }
            Some(Open::List(items)) => items.push(node),
            Some(Open::Map(entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let Node::Scalar(Scalar { text: key, .. }) = node else {
                        return Err(format!(
                            "line {line}: a key is {}; keys are text",
                            node.kind()
                        ));
                    };
                    if entries.iter().any(|(name, _)| *name == key) {
                        return Err(format!(
                            "line {line}: the key `{}` appears twice",
                            key.escape_debug()
                        ));
                    }
                    *pending = Some(key);
                }
            },
        }
    }
    Ok(documents)
}
