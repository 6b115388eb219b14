//! The workspace's shape, checked from `cargo metadata`: every folder is the crate of the same
//! name, and no service crate depends on another service crate (ARCHITECTURE.md, "Never").

use std::{collections::BTreeMap, path::Path, process::Command};

use serde_json::Value;

/// Crates that serve a gRPC service. `podium-access` is also the authentication library every
/// service needs (the interceptor, `Principal`, rate limits), so services may depend on it; it
/// depends on no service itself.
const SERVICES: &[&str] = &[
    "podium-access",
    "podium-agenda",
    "podium-status",
    "podium-feedback",
];

/// Libraries the services are built from; they depend on no service and no client.
const LIBRARIES: &[&str] = &[
    "podium-proto",
    "podium-text",
    "podium-eventlog",
    "podium-core",
];

/// Tools for tests that any crate may use in its tests: they depend on no workspace crate, so
/// they bring no service or client along.
const TEST_TOOLS: &[&str] = &["podium-natscluster"];

struct Package {
    /// The manifest's folder relative to the workspace root, with `/` separators.
    folder: String,
    /// Names of the workspace crates it depends on (normal, dev and build).
    depends_on: Vec<String>,
}

fn workspace() -> BTreeMap<String, Package> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let root = metadata["workspace_root"].as_str().expect("workspace_root");
    let packages = metadata["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("package name").to_owned();
            let manifest = Path::new(p["manifest_path"].as_str().expect("manifest_path"));
            let folder = manifest
                .parent()
                .and_then(|f| f.strip_prefix(root).ok())
                .expect("a member lives under the workspace root")
                .to_string_lossy()
                .replace('\\', "/");
            let depends_on = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(d))
                .map(str::to_owned)
                .collect();
            (name, Package { folder, depends_on })
        })
        .collect()
}

#[test]
fn every_folder_is_the_crate_of_the_same_name() {
    for (name, package) in workspace() {
        // `proto` is podium-proto; `services/agenda` is podium-agenda; `tests/fuzz/harness` is
        // podium-fuzz-harness: the group folder (services, clients, tests) is dropped.
        let mut parts: Vec<&str> = package.folder.split('/').collect();
        if parts.len() > 1 {
            parts.remove(0);
        }
        let expected = format!("podium-{}", parts.join("-"));
        assert_eq!(
            name, expected,
            "folder {} holds crate {name}",
            package.folder
        );
    }
}

#[test]
fn no_service_depends_on_another_service() {
    let workspace = workspace();
    for service in SERVICES {
        let package = workspace
            .get(*service)
            .unwrap_or_else(|| panic!("service crate {service} is in the workspace"));
        for dependency in &package.depends_on {
            let allowed = LIBRARIES.contains(&dependency.as_str())
                || TEST_TOOLS.contains(&dependency.as_str())
                || (dependency == "podium-access" && *service != "podium-access");
            assert!(
                allowed,
                "{service} depends on {dependency}: a service depends only on the libraries \
                 ({LIBRARIES:?}) and on podium-access for authentication"
            );
        }
    }
    for library in LIBRARIES {
        if let Some(package) = workspace.get(*library) {
            for dependency in &package.depends_on {
                assert!(
                    LIBRARIES.contains(&dependency.as_str())
                        || TEST_TOOLS.contains(&dependency.as_str()),
                    "library {library} depends on {dependency}, which is not a library"
                );
            }
        }
    }
    for tool in TEST_TOOLS {
        let package = workspace
            .get(*tool)
            .unwrap_or_else(|| panic!("test tool {tool} is in the workspace"));
        assert!(
            package.depends_on.is_empty(),
            "test tool {tool} depends on {:?}: it must depend on no workspace crate",
            package.depends_on
        );
    }
}
