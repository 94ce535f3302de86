//! `[health]`: the paths the gateway answers itself, before any route: liveness, readiness
//! and the Prometheus `metrics`.

use toml::Spanned;

use super::error::Errors;
use crate::path;

text_table! {
    /// `[health]` as written.
    RawHealth { liveness, readiness, metrics }
}

/// The checked health paths.
#[derive(Clone, Debug)]
pub(crate) struct HealthPaths {
    /// Always 200.
    pub(crate) liveness: String,
    /// 200 once every issuer's key set is loaded.
    pub(crate) readiness: String,
    /// The counters in the Prometheus text format.
    pub(crate) metrics: String,
}

impl HealthPaths {
    /// The three paths, which no route may take.
    pub(super) fn all(&self) -> [&str; 3] {
        [&self.liveness, &self.readiness, &self.metrics]
    }
}

/// Checks that the paths are normal absolute paths, and distinct.
pub(super) fn check(raw: &RawHealth, errors: &mut Errors<'_>) -> HealthPaths {
    let liveness = health_path(raw.liveness.as_ref(), "/healthz", errors);
    let readiness = health_path(raw.readiness.as_ref(), "/readyz", errors);
    let metrics = health_path(raw.metrics.as_ref(), "/metrics", errors);
    if liveness == readiness
        && let Some(r) = &raw.readiness
    {
        errors.at(
            r.span(),
            "the readiness path must differ from the liveness path",
        );
    }
    if (metrics == liveness || metrics == readiness)
        && let Some(m) = &raw.metrics
    {
        errors.at(
            m.span(),
            "the metrics path must differ from the liveness and readiness paths",
        );
    }
    HealthPaths {
        liveness,
        readiness,
        metrics,
    }
}

fn health_path(value: Option<&Spanned<String>>, default: &str, errors: &mut Errors<'_>) -> String {
    let Some(v) = value else {
        return default.to_owned();
    };
    match path::normalize(v.get_ref()) {
        Ok(p) if p == v.get_ref().as_str() && p != "/" => p.into_owned(),
        _ => {
            errors.at(
                v.span(),
                format!(
                    "`{}` is not a usable path: write an absolute path such as \"{default}\"",
                    v.get_ref()
                ),
            );
            default.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{PUBLIC, assert_one_error, public_with};

    #[test]
    fn defaults_and_own_paths() {
        assert_eq!(
            public_with("").health.all(),
            ["/healthz", "/readyz", "/metrics"]
        );
        let c = public_with(
            "[health]\nliveness = \"/-/live\"\nreadiness = \"/-/ready\"\nmetrics = \"/-/metrics\"\n",
        );
        assert_eq!(c.health.all(), ["/-/live", "/-/ready", "/-/metrics"]);
    }

    #[test]
    fn paths_must_be_normal_absolute_and_distinct() {
        for (health, says) in [
            ("liveness = \"healthz\"", "not a usable path"),
            ("liveness = \"/\"", "not a usable path"),
            ("readiness = \"/a/../b\"", "not a usable path"),
            (
                "readiness = \"/healthz\"",
                "must differ from the liveness path",
            ),
            (
                "metrics = \"/readyz\"",
                "must differ from the liveness and readiness paths",
            ),
        ] {
            assert_one_error(&format!("{PUBLIC}[health]\n{health}\n"), 8, says);
        }
    }
}
