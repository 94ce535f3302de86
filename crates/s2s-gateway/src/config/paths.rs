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
    use super::super::tests::UPSTREAM;
    use crate::{Config, path::PathOptions};

    #[test]
    fn both_keys_default_to_false() {
        let route = "[[route]]\nprefix = \"/\"\nupstream = \"app\"\npublic = true\n";
        let c = Config::from_toml_str(&format!("{UPSTREAM}{route}")).unwrap();
        assert_eq!(c.paths, PathOptions::default());
        let c = Config::from_toml_str(&format!(
            "{UPSTREAM}{route}[paths]\nallow_matrix_parameters = true\ncase_insensitive = true\n"
        ))
        .unwrap();
        assert!(c.paths.matrix_parameters && c.paths.case_insensitive);
    }
}
