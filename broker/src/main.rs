//! `fjord-broker`: loads the layered config and runs the broker until SIGTERM/SIGINT, then
//! shuts down gracefully: stop accepting, finish in-flight requests, flush and checkpoint every
//! log, mark the shutdown clean.

use anyhow::Context;
use clap::Parser;
use fjord_broker::config::{BrokerConfig, Cli};

/// jemalloc instead of glibc malloc: request and fetch buffers of many MiB are reused instead of
/// being mmapped and page-faulted afresh on every request.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    // One rustls crypto provider for the process (the S3 client of tiering uses rustls): with more
    // than one provider feature compiled in, rustls cannot pick one by itself.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match BrokerConfig::load(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("fjord-broker: {error}");
            std::process::exit(2);
        }
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord-worker")
        .build()
        .context("starting the tokio runtime")?
        .block_on(fjord_broker::run(config))
}
