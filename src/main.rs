//! `landport`: the command-line entry point. Parsing arguments and wiring components together
//! is all that lives here; each subcommand is a variant of [`Command`] with a function that runs
//! it and returns the process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use landport_config::Config;

mod run;

/// Live logistics telemetry: MQTT in, geofences, ETAs and events out, over HTTP.
#[derive(Debug, Parser)]
#[command(name = "landport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: MQTT ingest, tracking, storage, HTTP.
    ///
    /// With no config file: embedded MQTT broker on 127.0.0.1:1883, HTTP on 127.0.0.1:8080,
    /// embedded store in ./landport-data. LANDPORT_SECTION__KEY variables override the file.
    Run {
        /// The TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load and validate a config file (with LANDPORT_* environment overrides applied).
    ///
    /// Exits 0 and prints a one-line summary when it is valid; otherwise prints each problem
    /// as `field.path: reason` to stderr and exits 2.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
}

/// Exit code for a config that cannot be used (clap also uses 2 for a bad command line).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run_service(config.as_deref()),
    }
}

/// `landport run [--config FILE]`.
fn run_service(file: Option<&Path>) -> ExitCode {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(error) => {
            for problem in error.problems() {
                eprintln!("{problem}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    run::init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("landport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `landport check-config FILE`.
fn check_config(file: &Path) -> ExitCode {
    match Config::load(Some(file)) {
        Ok(config) => {
            println!("{}: OK: {}", file.display(), config.summary());
            ExitCode::SUCCESS
        }
        Err(error) => {
            for problem in error.problems() {
                eprintln!("{problem}");
            }
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}
