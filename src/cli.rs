//! The command line (clap derive): what each subcommand parses and which library call it makes.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_TOML, Layer, Sources};

#[derive(Debug, Parser)]
#[command(name = "spheroseg", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts; they override the file and the environment.
#[derive(Debug, Args, Default)]
pub struct Common {
    /// Configuration file (default: ./spheroseg.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory holding the database and the images.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve on, e.g. 127.0.0.1:5001.
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Number of worker threads.
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the queue (and, as later issues land, workers and the status page) until SIGTERM or Ctrl-C.
    Serve,
    /// Print the default configuration file or the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print a commented spheroseg.toml with every default.
    Default,
    /// Print the configuration in effect after file, environment and flags.
    Show,
}

/// A failure the CLI reports with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Exit {
    /// Bad configuration: one line, exit code 2.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Anything else: the cause chain, exit code 1.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Exit {
    pub fn code(&self) -> i32 {
        match self {
            Exit::Config(_) => 2,
            Exit::Other(_) => 1,
        }
    }
}

impl Cli {
    /// Loads the configuration from every source, this command line's flags on top.
    pub fn load_config(&self, env: HashMap<String, String>) -> Result<Config, Exit> {
        let flags = Layer {
            data_dir: self.common.data_dir.clone(),
            bind: self.common.bind.clone(),
            workers: self.common.workers,
            ..Layer::default()
        };
        Ok(Config::load(&Sources {
            file: self.common.config.clone(),
            env,
            flags,
        })?)
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Exit> {
    let env: HashMap<String, String> = std::env::vars().collect();
    match &cli.command {
        Command::Config {
            action: ConfigAction::Default,
        } => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Show,
        } => {
            let config = cli.load_config(env)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Serve => {
            let ignored = Config::ignored_env(&env);
            let config = cli.load_config(env)?;
            if !ignored.is_empty() {
                tracing::info!(
                    variables = ?ignored,
                    "ignoring settings of the replaced deployment: spheroseg keeps its queue and data in its own data directory"
                );
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("spheroseg-io")
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(crate::app::serve(config, crate::app::shutdown_signal()))?;
            Ok(())
        }
    }
}
