//! `fjord-e2e-render CLUSTER.yaml ROOT [SECRETS.json]`: prints, as JSON, how to start every broker
//! pod of the Cluster as a local process (see the `e2e` crate docs). Used by e2e/system/.

use std::collections::BTreeMap;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    fjord_operator::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cluster, root, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: fjord-e2e-render CLUSTER.yaml ROOT [SECRETS.json]");
    };
    let yaml = std::fs::read_to_string(cluster).with_context(|| format!("read {cluster}"))?;
    let secrets: e2e::Secrets = match rest.first() {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("read {path}"))?)?,
        None => BTreeMap::new(),
    };
    let pods = e2e::render_pods(&yaml, "default", &secrets, root, "127.0.0.1")?;
    println!("{}", serde_json::to_string_pretty(&pods)?);
    Ok(())
}
