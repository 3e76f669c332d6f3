//! Builds the usrsctp puppet (`peers/usrsctp_puppet.c`) into an executable
//! in `OUT_DIR`, linked against the system's libusrsctp (Debian
//! `libusrsctp-dev`), and tells the tests where it is
//! (`USRSCTP_PUPPET`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "peers/usrsctp_puppet.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let exe = out.join("usrsctp_puppet");
    let compiler = cc::Build::new()
        .opt_level(2)
        .warnings(true)
        .cargo_metadata(false)
        .get_compiler();
    let mut cmd: Command = compiler.to_command();
    cmd.arg("-std=gnu11")
        .arg("-Wall")
        .arg("-o")
        .arg(&exe)
        .arg(src)
        .arg("-lusrsctp")
        .arg("-lpthread");
    let status = cmd.status().expect("run the C compiler");
    assert!(
        status.success(),
        "building {src} failed (is libusrsctp-dev installed? interop/run.sh installs it)"
    );
    println!("cargo:rustc-env=USRSCTP_PUPPET={}", exe.display());
}
