//! `landport`: the command-line entry point. Parsing arguments and wiring components together
//! is all that lives here; each subcommand is a variant of [`Command`] with a function that runs
//! it and returns the process exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use landport_config::Config;

/// mimalloc instead of glibc's malloc: measured with readers and ingest together
/// (docs/architecture.md, "Dependencies chosen").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod demo;
mod mqtt_auth;
mod mqtt_events;
mod mqtt_tls;
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
    /// Run the service with a simulated fleet in Liaoning, sample geofences and a shipment.
    ///
    /// Prints the live map's URL with a fresh API key for the `demo` tenant.
    Demo {
        /// The TOML config file (optional; the defaults are what a demo wants).
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
    /// Publish a simulated fleet (trucks, reefers, warehouse sensors, phones on Liaoning's
    /// roads) to any MQTT broker, QoS 1, with a progress display and a summary at the end.
    Simulate {
        /// The broker: mqtt://HOST:PORT.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        /// Number of simulated devices.
        #[arg(long, default_value_t = 16)]
        devices: usize,
        /// Messages per second per device.
        #[arg(long, default_value_t = 1.0)]
        rate_hz: f64,
        /// How long to publish; until Ctrl-C when left out.
        #[arg(long)]
        duration_seconds: Option<u64>,
        /// Faults to inject: jitter,dropout,reorder,duplicate,malformed,store-and-forward.
        #[arg(long, default_value = "")]
        faults: String,
        /// Seed of the simulation (the same seed gives the same fleet).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Tenant in the landport/{tenant}/... topics.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
    },
}

/// Exit code for a config that cannot be used (clap also uses 2 for a bad command line).
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run_service(config.as_deref(), false),
        Command::Demo { config } => run_service(config.as_deref(), true),
        Command::Simulate {
            broker,
            devices,
            rate_hz,
            duration_seconds,
            faults,
            seed,
            tenant,
            time_scale,
        } => {
            let faults = match landport_simulators::fleet::Faults::parse(&faults) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("landport: --faults: {e}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let config = landport_simulators::fleet::FleetConfig {
                devices,
                rate_hz,
                duration: duration_seconds.map(std::time::Duration::from_secs),
                seed,
                faults,
                tenant,
                time_scale,
            };
            simulate(config, &broker)
        }
    }
}

/// `landport simulate --broker URL ...`: publishes until the duration is up (or Ctrl-C) and
/// prints the summary.
fn simulate(config: landport_simulators::fleet::FleetConfig, broker: &str) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(landport_simulators::fleet::run(config, broker, true)) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("landport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `landport run [--config FILE]`.
fn run_service(file: Option<&Path>, demo: bool) -> ExitCode {
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
    let result = if demo {
        runtime.block_on(demo::demo(config))
    } else {
        runtime.block_on(run::run(config))
    };
    match result {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Each subcommand's one-line help is its own (`demo` once showed `run`'s).
    #[test]
    fn help_describes_each_subcommand_with_its_own_words() {
        let help = Cli::command().render_help().to_string();
        let line = |name: &str| {
            help.lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in:\n{help}"))
                .to_owned()
        };
        assert!(
            line("run").contains("Run the service: MQTT ingest"),
            "{help}"
        );
        assert!(line("demo").contains("simulated fleet"), "{help}");
        assert!(line("check-config").contains("validate a config"), "{help}");
        assert!(line("simulate").contains("simulated fleet"), "{help}");
    }
}
