//! Pinning worker threads to cores.
//!
//! A worker pinned to a core keeps its caches (the hub's tables, the ring's
//! buffers) warm and never competes with another worker for one core. The
//! cores are those the process may run on (`sched_getaffinity`, so
//! `taskset` and cpusets are respected); worker `i` gets the `i`-th of them
//! (wrapping around when there are more workers than cores).
//!
//! Linux only (`sched_setaffinity`); elsewhere pinning reports that it is
//! unsupported and the workers run unpinned. A failure is never fatal: the
//! engine logs it and runs the worker unpinned.
#![allow(unsafe_code)]

use std::io;

/// The CPUs this process may run on, in increasing order (empty if the
/// kernel does not say).
#[cfg(target_os = "linux")]
pub(super) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is a plain bit array: all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer and size describe `set`, which the kernel writes
    // during the call and nothing else uses meanwhile.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set) };
    if r != 0 {
        return Vec::new();
    }
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    // SAFETY: `CPU_ISSET` only reads `set`; `cpu < CPU_SETSIZE` keeps it
    // inside the bit array.
    (0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
#[cfg(target_os = "linux")]
pub(super) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let max = usize::try_from(libc::CPU_SETSIZE).unwrap_or(0);
    if cpu >= max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: as in `allowed_cpus`: all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` (checked above) keeps the write inside the
    // bit array.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the pointer and size describe `set`, which the kernel only
    // reads during the call; pid 0 is the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pin_current_thread(_cpu: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pinning threads is implemented on Linux only",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pins_to_an_allowed_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "the process runs somewhere");
        let cpu = *cpus.last().expect("not empty");
        std::thread::spawn(move || {
            pin_current_thread(cpu).expect("pinned");
            assert_eq!(allowed_cpus(), vec![cpu]);
        })
        .join()
        .expect("the pinned thread");
        assert!(pin_current_thread(1 << 20).is_err());
    }
}
