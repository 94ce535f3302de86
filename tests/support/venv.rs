//! Python clients of the suites, each in a venv of its own directory: `requirements.txt`
//! (pinned) installed into `.venv` (gitignored) by `python3 -m venv` + `pip install`, once,
//! and again only when the requirements change.

use std::path::{Path, PathBuf};

use crate::peer::run;

/// `v20.1.0` / `Python 3.11.2` → (20, 1).
pub fn version(text: &str) -> Option<(u32, u32)> {
    let digits = text.trim().rsplit([' ', 'v']).next()?;
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Runs `install` unless `stamp` holds `wanted` (the lockfile it installed last).
pub fn install_once(
    stamp: &Path,
    wanted: &[u8],
    install: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    if std::fs::read(stamp).is_ok_and(|installed| installed == wanted) {
        return Ok(());
    }
    install()?;
    std::fs::write(stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// The venv's python of `dir` (Python 3.9+), `dir/requirements.txt` installed in `dir/.venv`.
pub fn python_venv(dir: &Path) -> Result<PathBuf, String> {
    let python = run("python3", &["--version"], dir)?;
    if version(&python).is_none_or(|v| v < (3, 9)) {
        return Err(format!("{python} is too old: the clients need Python 3.9+"));
    }
    let requirements = std::fs::read(dir.join("requirements.txt"))
        .map_err(|e| format!("cannot read {}/requirements.txt: {e}", dir.display()))?;
    let venv = dir.join(".venv");
    let bin = venv.join("bin");
    install_once(
        &venv.join(".s2s-installed-requirements.txt"),
        &requirements,
        || {
            eprintln!("python3 -m venv + pip install in {}", dir.display());
            run("python3", &["-m", "venv", "--clear", ".venv"], dir)?;
            let pip = bin.join("pip");
            run(
                &pip.to_string_lossy(),
                &[
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "-r",
                    "requirements.txt",
                ],
                dir,
            )
            .map(drop)
        },
    )?;
    Ok(bin.join("python"))
}
