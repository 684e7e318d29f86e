//! The Kubernetes deployment in `deploy/k8s/`: every manifest validates against the
//! Kubernetes API schemas (`kubernetes-validate --strict`), the Indexed Job runs each of
//! its N shards once, with only safe sysctls and the wiring the rendezvous needs, the
//! ConfigMap's scenario is a valid sockcap scenario that fits one pod, the shards prove
//! the rendezvous token from a Secret kustomize generates, and `collect.sh` saves one log
//! per completion index and hands them to `sockcap merge`.
//!
//! kubernetes-validate is a PyPI package; the README's test command installs it into
//! `target/kubernetes-validate/` (a venv). These tests find it there or on PATH, and
//! fail, saying how to install it, when it is in neither.

#[path = "../e2e/support.rs"]
#[allow(dead_code)] // shared with the end-to-end tests
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sockcap::plan::Plan;
use support::TempDir;
use yaml_rust2::{Yaml, YamlLoader};

/// The Kubernetes versions the manifests are validated against: the oldest they are
/// written for (podReplacementPolicy is on by default from 1.29) and a newer one.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.34.0"];

/// Where the README's test command installs kubernetes-validate, from the repository root.
const VENV_TOOL: &str = "target/kubernetes-validate/bin/kubernetes-validate";

/// The README's way to install it (the test command does this).
const INSTALL: &str = "apt-get install -y python3-venv && python3 -m venv target/kubernetes-validate \
                       && target/kubernetes-validate/bin/pip install kubernetes-validate==1.37.0";

/// Kubernetes' safe sysctls in 1.29, which a kubelet allows without
/// --allowed-unsafe-sysctls (net.ipv4.tcp_rmem and tcp_wmem joined in 1.32).
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Memory per connection in a pod, in bytes: sockcap's budget (1.5 KiB) and the kernel's
/// socket (~5.4 KB, charged to the pod's cgroup), the figures `sockcap preflight` uses.
const BYTES_PER_CONNECTION: u64 = 1536 + 5400;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

/// Every manifest in deploy/k8s: the YAML files but kustomization.yaml, sorted.
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/k8s exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// The one YAML document of deploy/k8s/`name`.
fn load(name: &str) -> Yaml {
    let path = deploy_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one resource per file", path.display());
    docs.remove(0)
}

fn int(y: &Yaml, what: &str) -> i64 {
    y.as_i64().unwrap_or_else(|| panic!("{what} is not an integer: {y:?}"))
}

fn string<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str().unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

fn list<'a>(y: &'a Yaml, what: &str) -> &'a [Yaml] {
    y.as_vec().unwrap_or_else(|| panic!("{what} is not a list: {y:?}"))
}

/// The item of a list of maps whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str, what: &str) -> &'a Yaml {
    list(items, what)
        .iter()
        .find(|i| i["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {what} named {name}"))
}

/// The Job's one container.
fn container(job: &Yaml) -> &Yaml {
    let containers = list(&job["spec"]["template"]["spec"]["containers"], "containers");
    assert_eq!(containers.len(), 1, "the shard pod has one container");
    &containers[0]
}

/// The container's arguments.
fn args(job: &Yaml) -> Vec<&str> {
    list(&container(job)["args"], "args").iter().map(|a| string(a, "an argument")).collect()
}

/// The value following `flag` in the arguments.
fn flag<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let at = args.iter().position(|a| *a == flag).unwrap_or_else(|| panic!("the Job's args lack {flag}: {args:?}"));
    args.get(at + 1).unwrap_or_else(|| panic!("{flag} has no value: {args:?}"))
}

/// N: the Job's completions.
fn shards(job: &Yaml) -> u64 {
    int(&job["spec"]["completions"], "spec.completions") as u64
}

/// kubernetes-validate on PATH, or in the venv the README's test command makes.
fn kubernetes_validate() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("kubernetes-validate")).collect::<Vec<_>>())
        .unwrap_or_default();
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(VENV_TOOL);
    on_path.into_iter().chain([venv.clone()]).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "kubernetes-validate (PyPI) is neither on PATH nor at {}: install it from the repository root with\n  {INSTALL}\n\
             (the README's test command does this)",
            venv.display()
        )
    })
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let tool = kubernetes_validate();
    let files = manifests();
    let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["job.yaml", "scenario.yaml", "service.yaml"]);
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&tool)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // A resource without a schema (a mistyped apiVersion or kind) is only a WARN, exit 0.
        let complaints: Vec<&str> = text.lines().filter(|l| l.starts_with("WARN") || l.starts_with("ERROR")).collect();
        assert!(out.status.success() && complaints.is_empty(), "kubernetes-validate {version} --strict:\n{text}");
    }
}

#[test]
fn kustomization_applies_every_manifest_and_copies_n_from_completions() {
    let kustomization = load("kustomization.yaml");
    let listed: BTreeSet<&str> =
        list(&kustomization["resources"], "resources").iter().map(|r| string(r, "a resource")).collect();
    let files: Vec<PathBuf> = manifests();
    let present: BTreeSet<&str> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(listed, present, "kustomization.yaml's resources and the manifests in deploy/k8s");

    let job = load("job.yaml");
    let job_name = string(&job["metadata"]["name"], "the Job's name");
    let replacements = list(&kustomization["replacements"], "replacements");
    assert_eq!(replacements.len(), 1);
    let source = &replacements[0]["source"];
    assert_eq!(source["kind"].as_str(), Some("Job"));
    assert_eq!(source["name"].as_str(), Some(job_name));
    assert_eq!(source["fieldPath"].as_str(), Some("spec.completions"));
    let targets = list(&replacements[0]["targets"], "targets");
    let mut paths = BTreeSet::new();
    for target in targets {
        assert_eq!(target["select"]["kind"].as_str(), Some("Job"));
        assert_eq!(target["select"]["name"].as_str(), Some(job_name));
        paths.extend(list(&target["fieldPaths"], "fieldPaths").iter().map(|p| string(p, "a fieldPath")));
    }
    let want = BTreeSet::from([
        "spec.parallelism",
        "spec.template.spec.containers.[name=sockcap].env.[name=SOCKCAP_SHARDS].value",
    ]);
    assert_eq!(paths, want);
    assert_eq!(container(&job)["name"].as_str(), Some("sockcap"), "the replacement selects the container by name");
}

#[test]
fn job_runs_each_of_n_shards_once() {
    let job = load("job.yaml");
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = shards(&job);
    assert!(n >= 2, "a sharded run has at least 2 shards, found {n}");
    assert_eq!(
        int(&spec["parallelism"], "spec.parallelism") as u64,
        n,
        "parallelism == completions: every shard runs at once"
    );
    let env = named(&container(&job)["env"], "SOCKCAP_SHARDS", "env variable");
    let env_n: u64 = string(&env["value"], "SOCKCAP_SHARDS").parse().expect("SOCKCAP_SHARDS is a number");
    assert_eq!(env_n, n, "SOCKCAP_SHARDS == completions");

    assert_eq!(int(&spec["backoffLimit"], "spec.backoffLimit"), 0, "a shard is never run again");
    assert_eq!(spec["podReplacementPolicy"].as_str(), Some("Failed"));
    assert!(int(&spec["activeDeadlineSeconds"], "spec.activeDeadlineSeconds") > 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"].as_str(), Some("Never"));
    assert!(!pod["hostNetwork"].as_bool().unwrap_or(false), "net.* sysctls are refused with host networking");

    let sysctls = list(&pod["securityContext"]["sysctls"], "securityContext.sysctls");
    for sysctl in sysctls {
        let name = string(&sysctl["name"], "a sysctl name").replace('/', ".");
        assert!(
            SAFE_SYSCTLS.contains(&name.as_str()),
            "{name} is not in Kubernetes' safe set (1.29): {SAFE_SYSCTLS:?}"
        );
    }
    named(&pod["securityContext"]["sysctls"], "net.ipv4.ip_local_port_range", "sysctl");

    let args = args(&job);
    assert_eq!(args[..2], ["run", "/scenario/scenario.toml"]);
    assert_eq!(flag(&args, "--shard"), "auto", "--shard auto: I from JOB_COMPLETION_INDEX, N from SOCKCAP_SHARDS");
    assert!(args.contains(&"--emit-report"), "the report reaches collect.sh through the log: {args:?}");
}

#[test]
fn prometheus_scrapes_each_shard_where_its_metrics_listen() {
    let job = load("job.yaml");
    let annotations = &job["spec"]["template"]["metadata"]["annotations"];
    let annotation = |key: &str| string(&annotations[key], key).to_string();
    assert_eq!(annotation("prometheus.io/scrape"), "true");
    assert_eq!(annotation("prometheus.io/path"), "/metrics");
    let port = annotation("prometheus.io/port");
    let listen = flag(&args(&job), "--metrics");
    assert_eq!(listen, format!("0.0.0.0:{port}"), "--metrics listens on the annotated port, on the pod's address");
    let declared = named(&container(&job)["ports"], "metrics", "container port");
    assert_eq!(int(&declared["containerPort"], "the metrics containerPort").to_string(), port);
}

#[test]
fn shards_meet_at_shard_0_through_the_headless_service() {
    let job = load("job.yaml");
    let service = load("service.yaml");
    let pod = &job["spec"]["template"];
    let service_name = string(&service["metadata"]["name"], "the Service's name");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"), "headless: DNS names the pods themselves");
    assert_eq!(service["spec"]["publishNotReadyAddresses"].as_bool(), Some(true));
    // Pod DNS names are <hostname>.<subdomain>, and the subdomain must be the Service.
    assert_eq!(pod["spec"]["subdomain"].as_str(), Some(service_name));
    let selector = service["spec"]["selector"].as_hash().expect("the Service selects pods");
    let labels = pod["metadata"]["labels"].as_hash().expect("the pods have labels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(labels.get(key), Some(value), "the Service selects the shard pods by {key:?}");
    }
    let port = int(&named(&service["spec"]["ports"], "rendezvous", "Service port")["port"], "the rendezvous port");
    let container_port = named(&container(&job)["ports"], "rendezvous", "container port");
    assert_eq!(int(&container_port["containerPort"], "containerPort"), port);
    // Indexed Job pods have hostname <job>-<index>: shard 0 is <job>-0.<service>.
    let job_name = string(&job["metadata"]["name"], "the Job's name");
    assert_eq!(flag(&args(&job), "--rendezvous"), format!("{job_name}-0.{service_name}:{port}"));
}

/// Shard 0 admits only the pods that hold the run's token: kustomize generates a Secret
/// from `deploy/k8s/rendezvous-token` (ignored by git), the Job mounts it read-only,
/// readable by the pod's group only, and hands its file to `--rendezvous-token-file`.
#[test]
fn shards_prove_the_rendezvous_token_from_a_generated_secret() {
    let kustomization = load("kustomization.yaml");
    let generators = list(&kustomization["secretGenerator"], "secretGenerator");
    assert_eq!(generators.len(), 1, "one generated Secret");
    let secret = string(&generators[0]["name"], "the Secret's name");
    let files = list(&generators[0]["files"], "the Secret's files");
    assert_eq!(files.len(), 1);
    let (key, file) = string(&files[0], "a file").split_once('=').expect("KEY=FILE");
    assert_eq!(file, "rendezvous-token");
    let gitignore = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "/deploy/k8s/rendezvous-token"), "the token file is never committed");

    let job = load("job.yaml");
    let pod = &job["spec"]["template"]["spec"];
    let volume = list(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["secret"]["secretName"].as_str() == Some(secret))
        .unwrap_or_else(|| panic!("no volume of the Secret {secret}"));
    let mode = int(&volume["secret"]["defaultMode"], "the Secret's defaultMode");
    assert_eq!(mode & 0o007, 0, "others may not read the token: mode {mode:o}");
    let user = int(&pod["securityContext"]["runAsUser"], "runAsUser");
    assert!(user != 0 && mode & 0o040 != 0, "the pod's user reads the token through its group: mode {mode:o}");
    let group = int(&pod["securityContext"]["runAsGroup"], "runAsGroup");
    assert_eq!(int(&pod["securityContext"]["fsGroup"], "fsGroup"), group, "the token's group is the pod's");
    let mount = named(&container(&job)["volumeMounts"], string(&volume["name"], "the volume's name"), "volume mount");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let path = flag(&args(&job), "--rendezvous-token-file");
    assert_eq!(path, format!("{}/{key}", string(&mount["mountPath"], "mountPath")));

    // A token made as kustomization.yaml says (32 random bytes in base64, a line end) is
    // one sockcap takes.
    let dir = TempDir::new("deploy-token");
    let token = dir.file(file, "q2Jf0vGm3d5Qm1fXb8aZpQy0b6T1nW4eK7sL9cR2uVo=\n");
    sockcap::rendezvous::Token::from_file(&token).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn configmap_scenario_is_valid_and_one_shard_fits_a_pod() {
    let job = load("job.yaml");
    let config = load("scenario.yaml");
    assert_eq!(config["kind"].as_str(), Some("ConfigMap"));
    // The Job mounts this ConfigMap where its args read the scenario.
    let pod = &job["spec"]["template"]["spec"];
    let mount = list(&container(&job)["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some("/scenario"))
        .expect("a volume mounted at /scenario");
    let volume = named(&pod["volumes"], string(&mount["name"], "the mount's volume"), "volume");
    assert_eq!(volume["configMap"]["name"].as_str(), config["metadata"]["name"].as_str());

    let text = string(&config["data"]["scenario.toml"], "data.scenario.toml");
    // The broker's name resolves only in the cluster: the scenario is checked with a
    // loopback address in its place (no lookup, no traffic).
    let target = "target = \"mqtt-broker:1883\"";
    assert!(text.contains(target), "the scenario's target is the broker Service: {target}");
    let text = text.replace(target, "target = \"127.0.0.1:1883\"");
    let plan = Plan::from_toml(&deploy_dir().join("scenario.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));

    // One shard's connections: below half its source port range toward the broker
    // (past it the kernel's port search slows ~30x), and inside its memory limit.
    let per_shard = plan.peak_held().div_ceil(shards(&job));
    let range =
        string(&named(&pod["securityContext"]["sysctls"], "net.ipv4.ip_local_port_range", "sysctl")["value"], "range");
    let (lo, hi) = range.split_once(char::is_whitespace).expect("\"LO HI\"");
    let ports = hi.trim().parse::<u64>().unwrap() - lo.trim().parse::<u64>().unwrap() + 1;
    assert!(per_shard <= ports / 2, "{per_shard} connections per shard, {ports} ports: add shards");
    let limit = bytes(string(&container(&job)["resources"]["limits"]["memory"], "limits.memory"));
    assert!(
        per_shard * BYTES_PER_CONNECTION <= limit,
        "{per_shard} connections per shard need ~{} MB, the memory limit is {} MB",
        per_shard * BYTES_PER_CONNECTION / 1_000_000,
        limit / 1_000_000
    );
}

/// A Kubernetes memory quantity ("512Mi", "1G", "800000000") in bytes.
fn bytes(quantity: &str) -> u64 {
    let units =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)];
    let (number, unit) = units
        .iter()
        .find_map(|(suffix, unit)| quantity.strip_suffix(suffix).map(|n| (n, *unit)))
        .unwrap_or((quantity, 1));
    number.parse::<u64>().unwrap_or_else(|_| panic!("memory quantity {quantity}")) * unit
}

/// A fake `kubectl`: a Job `sockcap` of 3 shards that finishes on the second poll, no pod
/// for index 1, two pods (an old and a newer one) for the others; it logs every call.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
[ "$1" = --namespace ] || { echo "no --namespace: $*" >&2; exit 99; }
shift 2
echo "$*" >>"$FAKE/calls"
case "$*" in
"get job sockcap -o jsonpath={range .status.conditions"*)
    polls=$(cat "$FAKE/polls" 2>/dev/null || echo 0)
    echo $((polls + 1)) >"$FAKE/polls"
    [ "$polls" -ge 1 ] && printf 'SuccessCriteriaMet Complete '
    exit 0 ;;
"get job sockcap -o jsonpath={.spec.completions}") printf 3 ;;
"get pods -l batch.kubernetes.io/job-name=sockcap,batch.kubernetes.io/job-completion-index=1 "*) ;;
"get pods -l batch.kubernetes.io/job-name=sockcap,batch.kubernetes.io/job-completion-index="*)
    i=${4##*=}
    printf 'sockcap-%s-old sockcap-%s-new' "$i" "$i" ;;
"logs pod/"*) printf 'log of %s\n' "${2#pod/}" ;;
*) echo "unexpected kubectl $*" >&2; exit 99 ;;
esac
"#;

/// A fake `sockcap`: records its arguments, exits 1 as merge does with a shard missing.
const FAKE_SOCKCAP: &str = "#!/bin/sh\nprintf '%s\\n' \"$@\" >\"$FAKE/merge-args\"\nexit 1\n";

#[test]
fn collect_saves_one_log_per_index_and_merges_them() {
    let dir = TempDir::new("deploy-collect");
    let script = |name: &str, text: &str| {
        let path = dir.file(name, text);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    };
    let kubectl = script("kubectl", FAKE_KUBECTL);
    let sockcap = script("sockcap", FAKE_SOCKCAP);
    let out_dir = dir.path("out");
    let out = Command::new("sh")
        .arg(deploy_dir().join("collect.sh"))
        .args(["--junit", "merged.xml"])
        .env("FAKE", &dir.0)
        .env("KUBECTL", &kubectl)
        .env("SOCKCAP", &sockcap)
        .env("NAMESPACE", "load")
        .env("OUT", &out_dir)
        .env("POLL_SECONDS", "0")
        .stdin(Stdio::null())
        .output()
        .expect("sh runs collect.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "merge's exit status passes through; stderr:\n{stderr}");
    assert!(stderr.contains("shard 1: no pod"), "{stderr}");
    // It waited for the Job to finish, polling twice.
    assert_eq!(std::fs::read_to_string(dir.path("polls")).unwrap().trim(), "2");

    let log = |i: u32| out_dir.join(format!("shard-{i}.log"));
    assert_eq!(std::fs::read_to_string(log(0)).unwrap(), "log of sockcap-0-new\n");
    assert_eq!(std::fs::read_to_string(log(2)).unwrap(), "log of sockcap-2-new\n");
    assert!(!log(1).exists());
    let merge_args = std::fs::read_to_string(dir.path("merge-args")).unwrap();
    let want = [
        "merge".to_string(),
        "--expect-shards".into(),
        "3".into(),
        "--json".into(),
        out_dir.join("merged.json").display().to_string(),
        "--junit".into(),
        "merged.xml".into(),
        log(0).display().to_string(),
        log(2).display().to_string(),
    ];
    assert_eq!(merge_args.lines().collect::<Vec<_>>(), want);
}
