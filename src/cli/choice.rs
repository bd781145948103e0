//! Flags whose value is one of the library's named choices (`bptt::Choice`): clap lists the
//! names with their lines in `--help` and refuses anything else.

use bptt::Choice;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// The value parser of a flag taking a `T`.
pub fn choice<T: Choice + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::ALL.iter().map(|v| PossibleValue::new(v.name()).help(sentence(&super::flags::as_flags(v.about()))));
    PossibleValuesParser::new(values).map(|name| match T::from_name(&name) {
        Some(v) => v,
        // PossibleValuesParser lets only the listed names through, and each comes from ALL.
        None => unreachable!("{name} is one of the listed values"),
    })
}

/// A value's line as `--help` shows it: a sentence, a first Latin letter a capital (φ stays φ).
fn sentence(about: &str) -> String {
    let mut chars = about.chars();
    match chars.next() {
        Some(first) if first.is_ascii_lowercase() => first.to_ascii_uppercase().to_string() + chars.as_str(),
        _ => about.to_string(),
    }
}
