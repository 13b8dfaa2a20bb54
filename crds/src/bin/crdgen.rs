//! `crdgen`: writes the Cluster and Topic CRDs as YAML into a directory (default
//! `crds/generated`), or with `--check` fails if the committed files differ from the code.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut check = false;
    let mut dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/generated"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("crdgen: --out needs a directory");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("crdgen: unknown argument {other:?} (usage: crdgen [--check] [--out DIR])");
                return ExitCode::from(2);
            }
        }
    }
    let mut stale = Vec::new();
    for crd in fjord_crds::crds() {
        let path = dir.join(fjord_crds::crd_file_name(&crd));
        let yaml = fjord_crds::crd_yaml(&crd);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        } else if let Err(error) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml)) {
            eprintln!("crdgen: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        eprintln!(
            "crdgen: out of date: {} (run `cargo run -p fjord-crds --bin crdgen`)",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
