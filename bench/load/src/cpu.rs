//! CPU time (user + system) of this process, and of an external server's process tree (nginx's
//! master and workers, the node process of oidc-provider), for "server CPU µs/req".

use std::collections::BTreeMap;

/// CPU time of this process so far, every thread's (exited ones too), in µs.
pub fn process_cpu_us() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// CPU time of the calling thread so far, in ns (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU time so far of `root` and all its descendants, in µs, from `/proc/<pid>/stat`: each
/// one's utime + stime (all its threads) plus cutime + cstime (its children already reaped,
/// so that a worker that exits mid-run still counts). `None` when `root` is gone.
/// Resolution: one clock tick (10 ms at the usual 100 Hz), small against a run's seconds.
pub fn tree_cpu_us(root: u32) -> Option<f64> {
    let stats: BTreeMap<u32, Stat> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .collect();
    stats.get(&root)?;
    let mut tree = vec![root];
    let mut i = 0;
    while let Some(&pid) = tree.get(i) {
        tree.extend(
            stats
                .iter()
                .filter(|(_, s)| s.ppid == pid)
                .map(|(child, _)| *child),
        );
        i += 1;
    }
    let ticks: u64 = tree.iter().map(|pid| stats[pid].ticks).sum();
    Some(ticks as f64 * 1e6 / clock_ticks_per_sec())
}

struct Stat {
    ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// `pid (comm) state ppid … utime stime cutime cstime …` (proc(5)); `comm` may hold spaces
/// and parentheses, so the fields are counted from its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // After comm: state is field 3 of proc(5), so field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::{parse_stat, process_cpu_us, tree_cpu_us};

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 917 0 0 0 \
                    120 30 5 2 20 0 1 0 123456 11111111 2222 18446744073709551615";
        let stat = parse_stat(line).expect("parsed");
        assert_eq!(stat.ppid, 4241);
        assert_eq!(stat.ticks, 120 + 30 + 5 + 2);
    }

    #[test]
    fn this_process_is_its_own_tree() {
        // Burn some CPU so that at least one tick shows.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let tree = tree_cpu_us(std::process::id()).expect("this process");
        assert!(tree > 0.0);
        assert!(tree <= process_cpu_us() + 20_000.0, "{tree}");
    }
}
