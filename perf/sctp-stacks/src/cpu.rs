//! This thread's CPU time (user + system): clock_gettime's per-thread CPU
//! clock, which reads the scheduler's exact runtime (getrusage's
//! RUSAGE_THREAD counts in scheduler ticks here, 4 ms).

use std::time::Duration;

/// User + system CPU time this thread has used so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a `timespec` we own; the clock exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The load averages (1, 5, 15 minutes), from /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
