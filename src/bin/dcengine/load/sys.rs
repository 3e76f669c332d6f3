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

/// Runs `f` on a thread of its own that first entered the network
/// namespace `name` (one `ip netns add NAME` made: `/run/netns/NAME`), and
/// returns what `f` returned. What `f` creates stays in that namespace:
/// sockets keep the namespace they were made in, and threads take their
/// creator's, so an engine started there binds and runs there while this
/// process lives in another (`dcengine load --client-netns`).
#[cfg(target_os = "linux")]
pub(crate) fn in_netns<T: Send>(
    name: &str,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    use std::os::fd::AsRawFd;
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("--client-netns {name:?}: not a namespace name"));
    }
    let path = format!("/run/netns/{name}");
    let ns = std::fs::File::open(&path).map_err(|e| format!("--client-netns: {path}: {e}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: `ns` is an open descriptor for the call's duration;
                // setns(2) changes only the calling thread's namespace, and
                // this thread is ours and ends when `f` does.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(format!(
                        "--client-netns: cannot enter {path}: {} (it needs CAP_SYS_ADMIN)",
                        std::io::Error::last_os_error()
                    ));
                }
                f()
            })
            .join()
            .map_err(|_| "--client-netns: the thread starting the clients panicked".to_string())?
    })
}

/// Network namespaces are Linux's.
#[cfg(not(target_os = "linux"))]
pub(crate) fn in_netns<T: Send>(
    _name: &str,
    _f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    Err("--client-netns needs Linux".into())
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

    #[test]
    fn a_namespace_name_is_a_name() {
        for bad in ["", "a/b", "..", "."] {
            let r = in_netns(bad, || Ok(()));
            assert!(r.is_err(), "{bad:?}");
        }
        let missing = in_netns("dcengine-no-such-namespace", || Ok(()));
        assert!(missing.is_err_and(|e| e.contains("--client-netns")));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_readable() {
        assert!(process_cpu("self").is_some());
        assert!(peak_rss_kib("self").unwrap_or(0) > 0);
        assert!(!threads().is_empty());
    }
}
