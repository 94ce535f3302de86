//! `[paths]`: how request paths are read (segment parameters, case).

use serde::Deserialize;

use crate::path::PathOptions;

/// `[paths]` as written; every value is valid, so there is nothing to check.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPaths {
    #[serde(default)]
    allow_matrix_parameters: bool,
    #[serde(default)]
    case_insensitive: bool,
}

impl From<&RawPaths> for PathOptions {
    fn from(raw: &RawPaths) -> Self {
        PathOptions {
            matrix_parameters: raw.allow_matrix_parameters,
            case_insensitive: raw.case_insensitive,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::public_with;
    use crate::path::PathOptions;

    #[test]
    fn both_keys_default_to_false() {
        assert_eq!(public_with("").paths, PathOptions::default());
        let c = public_with("[paths]\nallow_matrix_parameters = true\ncase_insensitive = true\n");
        assert!(c.paths.matrix_parameters && c.paths.case_insensitive);
    }
}
