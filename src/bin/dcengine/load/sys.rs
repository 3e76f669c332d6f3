//! CPU time and peak memory from `/proc` (Linux; zeros elsewhere).

use std::collections::BTreeSet;

/// Clock ticks a second (`sysconf(_SC_CLK_TCK)`, 100 where unknown).
pub(crate) fn ticks_per_second() -> f64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            return t as f64;
        }
    }
    100.0
}

/// User plus system clock ticks in a `stat` line (`/proc/…/stat`): the
/// 14th and 15th fields, counted after the command name's closing
/// parenthesis (the name may hold spaces).
pub(crate) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field of a `status` file (`VmHWM`, `VmRSS`), in KiB.
pub(crate) fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// CPU seconds (user + system) of a process: `"self"` or a pid.
pub(crate) fn process_cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_ticks(&stat)? as f64 / ticks_per_second())
}

/// Peak resident set (VmHWM) of a process, in KiB.
pub(crate) fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "VmHWM")
}

/// This process's threads.
pub(crate) fn threads() -> BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds of some of this process's threads (those that ended count
/// nothing).
pub(crate) fn threads_cpu(tids: &BTreeSet<u32>) -> f64 {
    let ticks: u64 = tids
        .iter()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{t}/stat")).ok()?;
            parse_stat_ticks(&stat)
        })
        .sum();
    ticks as f64 / ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime() {
        let stat = "4242 (dc engine) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 37 0 0 20 0 3 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(187));
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn status_fields_in_kib() {
        let status =
            "Name:\tdcengine\nVmPeak:\t  200000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 9999 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(12345));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(9999));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_readable() {
        assert!(process_cpu("self").is_some());
        assert!(peak_rss_kib("self").unwrap_or(0) > 0);
        assert!(!threads().is_empty());
    }
}
