//! Field names in text (rules, Sigma mappings) to [`Field`]s, once, when they are loaded.

use super::{FIELDS, Field};
use crate::{Error, Result};

/// How much of an unknown name an error quotes, in characters.
const QUOTED_CHARS: usize = 64;

/// How many edits (a character added, removed or changed; case aside) a name may be from a
/// field's for the error to suggest that field.
const MAX_EDITS: usize = 2;

/// The field named `name`: its dotted name (`source.ip`, `@timestamp`) or its column name
/// (`source_ip`, `timestamp`). Names are exact: case and punctuation count.
///
/// An unknown name is [`Error::UnknownField`], which quotes the name (escaped, cut to 64
/// characters) and suggests the field closest to it, if one is within two edits.
pub fn resolve(name: &str) -> Result<&'static Field> {
    FIELDS
        .iter()
        .find(|field| field.name == name || field.column == name)
        .ok_or_else(|| Error::UnknownField {
            name: name.chars().take(QUOTED_CHARS).collect(),
            len: name.len(),
            closest: closest(name),
        })
}

/// The dotted name of the field nearest to `name`, comparing it with every field's dotted and
/// column names without regard to case, if one is at most [`MAX_EDITS`] edits away (and not
/// more edits than a third of the name).
fn closest(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.chars().nth(QUOTED_CHARS).is_some() {
        return None;
    }
    let wanted: Vec<char> = name.to_lowercase().chars().collect();
    let allowed = MAX_EDITS.min(wanted.len() / 3);
    FIELDS
        .iter()
        .filter_map(|field| {
            let edits = [field.name, field.column]
                .into_iter()
                .filter_map(|known| edits_within(&wanted, known, allowed))
                .min()?;
            Some((edits, field.name))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, name)| name)
}

/// The edit (Levenshtein) distance between `wanted` and `known`, if it is at most `allowed`.
fn edits_within(wanted: &[char], known: &str, allowed: usize) -> Option<usize> {
    let known: Vec<char> = known.chars().collect();
    if wanted.len().abs_diff(known.len()) > allowed {
        return None;
    }
    let mut previous: Vec<usize> = (0..=known.len()).collect();
    for (wanted_idx, wanted_char) in wanted.iter().enumerate() {
        let mut current = vec![wanted_idx + 1; known.len() + 1];
        for (known_idx, known_char) in known.iter().enumerate() {
            let change = previous[known_idx] + usize::from(wanted_char != known_char);
            current[known_idx + 1] = change
                .min(previous[known_idx + 1] + 1)
                .min(current[known_idx] + 1);
        }
        previous = current;
    }
    let edits = previous[known.len()];
    (edits <= allowed).then_some(edits)
}
