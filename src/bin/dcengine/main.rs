//! The `dcengine` command: the demo, a server, join tokens, a terminal chat.

mod demo;
mod load;
mod net;
mod signal;
mod sim_demo;

/// The binary's allocator (the library leaves the choice to its users).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// dcengine: a data-channel engine for media servers.
///
/// Without a command it runs `demo`, the embedded default job.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// What to do (default: demo).
    #[command(subcommand)]
    command: Option<Command>,
    /// The demo's options when no command is given.
    #[command(flatten)]
    demo: demo::DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A server and clients on 127.0.0.1 exchange chat, telemetry, cursors
    /// and data over real UDP for a few seconds, then a summary is printed
    /// (`--simulated`: in memory, through a lossy simulated network).
    Demo(demo::DemoArgs),
    /// Serves calls over UDP until SIGINT or SIGTERM.
    Serve(net::ServeArgs),
    /// Prints a join token for a participant of a call.
    Token(net::TokenArgs),
    /// Load test over UDP: client engines join calls on a server (embedded
    /// on loopback by default), send timestamped messages open loop or at a
    /// rate, and the one-way latency, throughput, loss, CPU and memory are
    /// printed as a table or JSON.
    Load(load::LoadArgs),
    /// Joins a call and chats on channel 10000: each line typed is sent, and
    /// what others send is printed.
    Chat(net::ChatArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => demo::run(&cli.demo),
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Serve(args)) => net::serve(&args),
        Some(Command::Token(args)) => net::token(&args),
        Some(Command::Chat(args)) => net::chat(&args),
        Some(Command::Load(args)) => load::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dcengine: {e}");
            ExitCode::FAILURE
        }
    }
}
