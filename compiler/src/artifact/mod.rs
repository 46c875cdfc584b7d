//! What goes next to every artifact: the C header (`model.h`) and the JSON manifest.

pub mod header;
pub mod manifest;

/// A C identifier from a model name: ASCII alphanumerics and `_`, not starting with a
/// digit. Used for `--name` defaults and macro names.
pub fn c_ident(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Whether `s` can be used as a symbol prefix as given.
pub fn is_c_ident(s: &str) -> bool {
    !s.is_empty() && c_ident(s) == s && !s.starts_with("__")
}
