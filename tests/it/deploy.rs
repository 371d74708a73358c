//! The packaging — `Dockerfile`, `compose.yaml` and `deploy/kubernetes/` —
//! checked against the binary it runs: every `AZORA_*` variable it sets is
//! one `azora` reads, every command one `azora` accepts, every probe asks a
//! health entry the server reports on the port it listens on. The compose
//! health check (`azora-probe`) runs against the real server. No image is
//! built here: these machines have no Docker engine.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use azora::health::{LIVENESS, READINESS};
use azora_probe::Probe;
use clap::Parser;
use yaml_serde::Value;

use crate::common::{Backend, TestApp};

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn parse_yaml(path: &Path) -> Value {
    yaml_serde::from_str(&read(path)).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every YAML file under `deploy/`, recursively.
fn deploy_yaml_files() -> Vec<PathBuf> {
    fn walk(directory: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repository().join("deploy"), &mut found);
    found.sort();
    found
}

fn kubernetes() -> PathBuf {
    repository().join("deploy/kubernetes")
}

/// The one manifest of this kind in `deploy/kubernetes`.
fn manifest(kind: &str) -> Value {
    let mut found: Vec<Value> = deploy_yaml_files()
        .iter()
        .map(|path| parse_yaml(path))
        .filter(|document| document["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found.remove(0)
}

fn compose() -> Value {
    parse_yaml(&repository().join("compose.yaml"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(text)
        .collect()
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value:?}"))
}

/// Whether every label the selector names is on the labels, with its value.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a selector");
    !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
}

fn port_of(address: &str) -> u16 {
    address
        .parse::<SocketAddr>()
        .unwrap_or_else(|error| panic!("{address:?}: {error}"))
        .port()
}

/// One stage of the Dockerfile: its instructions, continuation lines joined.
struct Stage {
    from: String,
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(name, _)| name == keyword)
            .map(|(_, arguments)| arguments.as_str())
            .collect()
    }

    fn one(&self, keyword: &str) -> &str {
        match self.all(keyword)[..] {
            [arguments] => arguments,
            ref found => panic!("one {keyword} in the stage from {}: {found:?}", self.from),
        }
    }

    /// An exec-form (JSON) argument list, as ENTRYPOINT and CMD must be.
    fn exec_form(&self, keyword: &str) -> Vec<String> {
        serde_json::from_str(self.one(keyword))
            .unwrap_or_else(|error| panic!("{keyword} in exec form: {error}"))
    }
}

/// The Dockerfile's stages. Enough of the syntax for this Dockerfile: one
/// instruction per line or continued with `\`, comments on lines of their
/// own, no heredocs.
fn dockerfile() -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut pending = String::new();
    for line in read(&repository().join("Dockerfile")).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let instruction = std::mem::take(&mut pending);
        let (keyword, arguments) = instruction.split_once(char::is_whitespace).unwrap();
        let (keyword, arguments) = (keyword.to_uppercase(), arguments.trim().to_owned());
        if keyword == "FROM" {
            stages.push(Stage {
                from: arguments,
                instructions: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("FROM first")
                .instructions
                .push((keyword, arguments));
        }
    }
    stages
}

/// The `AZORA_*` variables the binary reads, from its own help (`serve`'s
/// shows the shared settings and `--no-migrate`'s).
fn variables_the_binary_reads() -> BTreeSet<String> {
    let mut variables = BTreeSet::new();
    for arguments in [&["--help"][..], &["serve", "--help"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_azora"))
            .args(arguments)
            .output()
            .unwrap();
        assert!(output.status.success(), "azora {arguments:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        for after in help.split("[env: ").skip(1) {
            variables.insert(after.split(['=', ']']).next().unwrap().to_owned());
        }
    }
    variables
}

/// Every `AZORA_…` name written in a text, comments included (a bare
/// `AZORA_*` is prose, not a name).
fn variables_named_in(text: &str) -> BTreeSet<String> {
    let is_name = |character: char| {
        character.is_ascii_uppercase() || character.is_ascii_digit() || character == '_'
    };
    text.match_indices("AZORA_")
        .filter_map(|(at, _)| text[at..].split(|character| !is_name(character)).next())
        .filter(|name| name.len() > "AZORA_".len())
        .map(str::to_owned)
        .collect()
}

/// Asserts that `azora <arguments>` parses, by asking for its help.
fn assert_azora_accepts(arguments: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_azora"))
        .args(arguments)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "azora {arguments:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn pod_spec(kind: &str) -> Value {
    manifest(kind)["spec"]["template"]["spec"].clone()
}

/// The one container of a workload's pod.
fn container(kind: &str) -> Value {
    let spec = pod_spec(kind);
    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "one container in the {kind}");
    containers[0].clone()
}

/// A setting the ConfigMap must state, since a manifest's value depends on it.
fn configured(variable: &str) -> String {
    let config = manifest("ConfigMap");
    text(&config["data"][variable]).to_owned()
}

#[test]
fn every_azora_variable_the_packaging_names_is_a_setting_of_the_binary() {
    let known = variables_the_binary_reads();
    assert!(known.contains("AZORA_NO_MIGRATE"), "{known:?}");
    let mut files = deploy_yaml_files();
    files.push(repository().join("compose.yaml"));
    files.push(repository().join("Dockerfile"));
    for file in files {
        let unknown: Vec<_> = variables_named_in(&read(&file))
            .into_iter()
            .filter(|name| !known.contains(name))
            .collect();
        assert!(unknown.is_empty(), "{}: {unknown:?}", file.display());
    }
    let secret = manifest("Secret");
    for variable in ["AZORA_DATABASE_URL", "AZORA_REDIS_URL"] {
        assert!(secret["stringData"][variable].is_string(), "{variable}");
    }
}

#[test]
fn the_commands_the_packaging_runs_are_ones_the_binary_accepts() {
    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    let entrypoint = runtime.exec_form("ENTRYPOINT");
    assert_eq!(entrypoint, ["azora"]);
    let default_command = runtime.exec_form("CMD");
    let default_command: Vec<&str> = default_command.iter().map(String::as_str).collect();
    assert_azora_accepts(&default_command);

    let compose = compose();
    let services = &compose["services"];
    for kind in ["Deployment", "Job"] {
        let container = container(kind);
        // `command` would replace the image's ENTRYPOINT, and `args` would
        // no longer be azora's.
        assert!(container["command"].is_null(), "{kind}");
        assert_azora_accepts(&strings(&container["args"]));
    }
    for service in ["migrate", "azora"] {
        assert_azora_accepts(&strings(&services[service]["command"]));
    }
    assert_eq!(strings(&container("Job")["args"]), ["migrate", "up"]);
    assert_eq!(strings(&services["migrate"]["command"]), ["migrate", "up"]);
    for arguments in [
        strings(&container("Deployment")["args"]),
        strings(&services["azora"]["command"]),
    ] {
        assert_eq!(
            arguments,
            ["serve", "--no-migrate"],
            "one migration, not one per replica"
        );
    }
    assert_eq!(container("Job")["image"], container("Deployment")["image"]);
    assert_eq!(services["migrate"]["image"], services["azora"]["image"]);
}

#[test]
fn the_kubernetes_probes_ask_real_health_entries_on_the_port_azora_listens_on() {
    let container = container("Deployment");
    let ports = container["ports"].as_sequence().unwrap();
    let grpc = ports
        .iter()
        .find(|port| port["name"].as_str() == Some("grpc"))
        .expect("a port named grpc");
    let container_port = number(&grpc["containerPort"]);
    let listen = configured("AZORA_LISTEN_ADDR");
    assert_eq!(u64::from(port_of(&listen)), container_port, "{listen}");
    for (probe, entry) in [
        ("startupProbe", LIVENESS),
        ("livenessProbe", LIVENESS),
        ("readinessProbe", READINESS),
    ] {
        let grpc_probe = &container[probe]["grpc"];
        assert_eq!(text(&grpc_probe["service"]), entry, "{probe}");
        assert_eq!(number(&grpc_probe["port"]), container_port, "{probe}");
    }

    let stages = dockerfile();
    let runtime = stages.last().unwrap();
    assert_eq!(runtime.one("EXPOSE"), container_port.to_string());
    let image_listen = runtime
        .all("ENV")
        .into_iter()
        .find_map(|env| env.strip_prefix("AZORA_LISTEN_ADDR="))
        .expect("the image sets AZORA_LISTEN_ADDR");
    assert!(
        !image_listen
            .parse::<SocketAddr>()
            .unwrap()
            .ip()
            .is_loopback(),
        "a container must listen beyond its loopback: {image_listen}"
    );
    assert_eq!(u64::from(port_of(image_listen)), container_port);
}

#[test]
fn the_service_and_the_disruption_budget_select_the_servers_and_only_them() {
    let deployment = manifest("Deployment");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let job_pod_labels = &manifest("Job")["spec"]["template"]["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));

    let service = manifest("Service");
    assert!(selects(&service["spec"]["selector"], pod_labels));
    assert!(
        !selects(&service["spec"]["selector"], job_pod_labels),
        "the migration's pod is no endpoint"
    );
    let service_ports = service["spec"]["ports"].as_sequence().unwrap();
    let container = container("Deployment");
    let container_port_names: Vec<&str> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|port| text(&port["name"]))
        .collect();
    for port in service_ports {
        assert_eq!(text(&port["appProtocol"]), "grpc");
        assert!(
            container_port_names.contains(&text(&port["targetPort"])),
            "{:?} targets a named container port",
            port["name"]
        );
    }

    let budget = manifest("PodDisruptionBudget");
    assert!(selects(
        &budget["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert!(!selects(
        &budget["spec"]["selector"]["matchLabels"],
        job_pod_labels
    ));
    let replicas = number(&deployment["spec"]["replicas"]);
    assert!(replicas >= 2, "{replicas} replicas");
    assert!(
        number(&budget["spec"]["minAvailable"]) < replicas,
        "a drain must be able to evict one"
    );
}

#[test]
fn the_servers_are_given_longer_to_stop_than_their_drain_takes() {
    // NOT_SERVING, the drain delay (still serving), then the grace.
    let grace_ms: u64 = configured("AZORA_SHUTDOWN_GRACE_MS").parse().unwrap();
    let delay_ms: u64 = configured("AZORA_SHUTDOWN_DRAIN_DELAY_MS").parse().unwrap();
    let termination_seconds = number(&pod_spec("Deployment")["terminationGracePeriodSeconds"]);
    assert!(
        termination_seconds * 1000 > delay_ms + grace_ms,
        "{termination_seconds} s"
    );

    let compose = compose();
    let azora = &compose["services"]["azora"];
    let grace_ms: u64 = text(&azora["environment"]["AZORA_SHUTDOWN_GRACE_MS"])
        .parse()
        .unwrap();
    let stop_seconds: u64 = text(&azora["stop_grace_period"])
        .strip_suffix('s')
        .and_then(|seconds| seconds.parse().ok())
        .expect("stop_grace_period in seconds");
    assert!(stop_seconds * 1000 > grace_ms, "{stop_seconds} s");
}

#[test]
fn the_pods_run_as_the_images_non_root_user_on_a_read_only_root() {
    let stages = dockerfile();
    let user = stages.last().unwrap().one("USER");
    let uid: u64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the image runs as root");
    for kind in ["Deployment", "Job"] {
        let security = &pod_spec(kind)["securityContext"];
        assert_eq!(security["runAsNonRoot"].as_bool(), Some(true), "{kind}");
        assert_eq!(number(&security["runAsUser"]), uid, "{kind}");
        let container = container(kind);
        let security = &container["securityContext"];
        assert_eq!(
            security["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{kind}"
        );
        assert_eq!(
            security["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{kind}"
        );
        assert!(
            container["resources"]["requests"]["memory"].is_string(),
            "{kind}"
        );
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{kind}"
        );
    }
}

#[test]
fn the_manifests_name_no_namespace_and_the_kustomization_lists_them_all() {
    let kustomization = parse_yaml(&kubernetes().join("kustomization.yaml"));
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let mut present = BTreeSet::new();
    for path in deploy_yaml_files() {
        let document = parse_yaml(&path);
        assert!(
            document["metadata"]["namespace"].is_null() && document["namespace"].is_null(),
            "{} names a namespace",
            path.display()
        );
        if path.parent() == Some(kubernetes().as_path())
            && path.file_name().unwrap() != "kustomization.yaml"
        {
            present.insert(path.file_name().unwrap().to_str().unwrap().to_owned());
        }
    }
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present);
}

#[test]
fn the_image_builds_azora_with_a_rust_the_crate_accepts_and_ships_the_probe() {
    let stages = dockerfile();
    assert!(stages.len() >= 2, "a builder stage and a runtime stage");
    let builder = &stages[0];
    let version = builder
        .from
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .expect("the builder is the official rust image");
    let version: Vec<u32> = version
        .split('.')
        .map(|part| part.parse().unwrap())
        .collect();
    let required: Vec<u32> = env!("CARGO_PKG_RUST_VERSION")
        .split('.')
        .map(|part| part.parse().unwrap())
        .collect();
    assert!(
        version >= required,
        "{version:?} < rust-version {required:?}"
    );
    let build = builder.all("RUN").join("\n");
    assert!(
        build.contains("cargo build --release --locked --bin azora"),
        "{build}"
    );
    assert!(build.contains("--bin azora-probe"), "{build}");

    let runtime = stages.last().unwrap();
    let copied = runtime.all("COPY").join("\n");
    assert!(
        copied.contains("/azora ") && copied.contains("/azora-probe "),
        "{copied}"
    );
    let compose = compose();
    let health_check = strings(&compose["services"]["azora"]["healthcheck"]["test"]);
    assert_eq!(
        health_check[..2],
        ["CMD", "azora-probe"],
        "exec form: no shell in the image"
    );
}

#[test]
fn compose_starts_azora_after_healthy_dependencies_and_a_finished_migration() {
    let compose = compose();
    let services = &compose["services"];
    let depends_on = &services["azora"]["depends_on"];
    for (service, condition) in [
        ("postgres", "service_healthy"),
        ("redis", "service_healthy"),
        ("migrate", "service_completed_successfully"),
    ] {
        assert_eq!(
            text(&depends_on[service]["condition"]),
            condition,
            "{service}"
        );
        assert!(services[service].is_mapping(), "{service} is a service");
    }
    assert_eq!(
        text(&services["migrate"]["depends_on"]["postgres"]["condition"]),
        "service_healthy"
    );
    for service in ["postgres", "redis"] {
        let test = strings(&services[service]["healthcheck"]["test"]);
        assert_eq!(test[0], "CMD", "{service}");
    }
    let environment = &services["azora"]["environment"];
    assert!(text(&environment["AZORA_DATABASE_URL"]).starts_with("postgres://"));
    assert!(text(&environment["AZORA_REDIS_URL"]).starts_with("redis://"));
    let listen_port = port_of(text(&environment["AZORA_LISTEN_ADDR"]));
    let published = strings(&services["azora"]["ports"]);
    assert!(
        published
            .iter()
            .any(|mapping| mapping.ends_with(&format!(":{listen_port}"))),
        "{published:?}"
    );
}

/// The compose health check, as written, against a server: SERVING passes,
/// an unknown entry and a port nobody listens on fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_health_check_passes_only_when_readiness_is_serving() {
    let compose = compose();
    let azora = &compose["services"]["azora"];
    let health_check = strings(&azora["healthcheck"]["test"]);
    let probe = Probe::try_parse_from(&health_check[1..]).expect("azora-probe's arguments");
    assert_eq!(probe.service, READINESS);
    let probed_port = probe
        .addr
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .expect("a port in --addr");
    assert_eq!(
        probed_port,
        port_of(text(&azora["environment"]["AZORA_LISTEN_ADDR"]))
    );

    let app = TestApp::spawn(Backend::Sqlite).await;
    let against_the_app = Probe {
        addr: app.url(),
        ..probe.clone()
    };
    assert_eq!(against_the_app.check().await, Ok(()));
    let unknown_entry = Probe {
        service: "nonsense".into(),
        ..against_the_app.clone()
    };
    assert!(unknown_entry.check().await.is_err());

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nobody_listening = Probe {
        addr: format!("http://127.0.0.1:{closed_port}"),
        ..probe
    };
    assert!(nobody_listening.check().await.is_err());
}
