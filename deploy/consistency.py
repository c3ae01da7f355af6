"""Cross-file checks of deploy/ that no schema validator makes.

Usage:
  consistency.py manifests DEPLOY_DIR
      Check that the DaemonSet, Service, PodMonitor, scrape job and alerts
      agree on labels, port and job name, and that the DaemonSet keeps its
      security settings.
  consistency.py dashboard-rules DASHBOARD_JSON OUTPUT_YAML
      Write every PromQL query of the dashboard, with its template
      variables filled in, as recording rules, for `promtool check rules`.
"""

import json
import re
import sys
from pathlib import Path

import yaml

JOB_NAME = "chokepoint-agent"
REQUIRED_CAPABILITIES = {"BPF", "PERFMON", "SYS_RESOURCE", "NET_ADMIN", "DAC_READ_SEARCH"}
TEMPLATE_VALUES = {"$__rate_interval": "1m", "$node": ".*", "$namespace": ".*", "$pod": ".*"}


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def load_yaml(path):
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def check_manifests(deploy_dir):
    kubernetes = deploy_dir / "kubernetes"
    daemonset = load_yaml(kubernetes / "02-daemonset.yaml")
    service = load_yaml(kubernetes / "03-service.yaml")
    pod_monitor = load_yaml(kubernetes / "04-podmonitor.yaml")
    scrape = load_yaml(deploy_dir / "prometheus" / "scrape.yaml")
    alerts_text = (deploy_dir / "prometheus" / "alerts.yaml").read_text(encoding="utf-8")

    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    pod_spec = daemonset["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}

    expect(pod_monitor["apiVersion"] == "monitoring.coreos.com/v1", "04-podmonitor.yaml: apiVersion must be monitoring.coreos.com/v1")
    expect(pod_monitor["kind"] == "PodMonitor", "04-podmonitor.yaml: kind must be PodMonitor")
    for name, selector in [
        ("02-daemonset.yaml spec.selector", daemonset["spec"]["selector"]["matchLabels"]),
        ("03-service.yaml spec.selector", service["spec"]["selector"]),
        ("04-podmonitor.yaml spec.selector", pod_monitor["spec"]["selector"]["matchLabels"]),
    ]:
        missing = {key: value for key, value in selector.items() if pod_labels.get(key) != value}
        expect(not missing, f"{name} selects labels {missing} that the DaemonSet's pods do not carry")

    expect(
        pod_monitor["spec"]["namespaceSelector"]["matchNames"] == [daemonset["metadata"]["namespace"]],
        "04-podmonitor.yaml: namespaceSelector must name the DaemonSet's namespace",
    )
    for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]:
        expect(endpoint["port"] in port_names, f"04-podmonitor.yaml: port {endpoint['port']!r} is not a container port name of the DaemonSet")
    for port in service["spec"]["ports"]:
        expect(port["targetPort"] in port_names, f"03-service.yaml: targetPort {port['targetPort']!r} is not a container port name of the DaemonSet")

    # The job name reaches Prometheus three ways, and the agent-down alert
    # only works if all of them agree.
    job_from_pod_monitor = pod_labels.get(pod_monitor["spec"]["jobLabel"])
    expect(job_from_pod_monitor == JOB_NAME, f"04-podmonitor.yaml: jobLabel gives job {job_from_pod_monitor!r}, expected {JOB_NAME!r}")
    scrape_jobs = [job["job_name"] for job in scrape["scrape_configs"]]
    expect(scrape_jobs == [JOB_NAME], f"scrape.yaml: job names {scrape_jobs}, expected [{JOB_NAME!r}]")
    alert_jobs = set(re.findall(r'job="([^"]+)"', alerts_text))
    expect(alert_jobs == {JOB_NAME}, f"alerts.yaml: selects jobs {sorted(alert_jobs)}, expected only {JOB_NAME!r}")

    metrics_port = port_names["metrics"]
    args = container["args"]
    expect(
        "--listen" in args and args[args.index("--listen") + 1] == f"0.0.0.0:{metrics_port}",
        f"02-daemonset.yaml: args {args} must listen on 0.0.0.0:{metrics_port}, the metrics container port",
    )
    for probe in ("livenessProbe", "readinessProbe"):
        http_get = container[probe]["httpGet"]
        expect(http_get["path"] == "/healthz" and http_get["port"] == "metrics", f"02-daemonset.yaml: {probe} must GET /healthz on port metrics")

    check_security(pod_spec, container)


def check_security(pod_spec, container):
    """Check that the DaemonSet has not drifted back to privileged mode
    or writable host mounts."""
    security = container["securityContext"]
    expect(pod_spec.get("hostPID") is True, "02-daemonset.yaml: hostPID must be true")
    expect(security.get("privileged") is False, "02-daemonset.yaml: privileged must be false")
    expect(security.get("allowPrivilegeEscalation") is False, "02-daemonset.yaml: allowPrivilegeEscalation must be false")
    expect(security.get("readOnlyRootFilesystem") is True, "02-daemonset.yaml: readOnlyRootFilesystem must be true")
    capabilities = security["capabilities"]
    expect(capabilities.get("drop") == ["ALL"], "02-daemonset.yaml: capabilities.drop must be [ALL]")
    added = set(capabilities.get("add", []))
    expect(added == REQUIRED_CAPABILITIES, f"02-daemonset.yaml: added capabilities {sorted(added)}, expected {sorted(REQUIRED_CAPABILITIES)}")
    writable = [mount["name"] for mount in container["volumeMounts"] if mount.get("readOnly") is not True]
    expect(not writable, f"02-daemonset.yaml: volume mounts {writable} must be readOnly")


def write_dashboard_rules(dashboard_path, output_path):
    with open(dashboard_path, encoding="utf-8") as file:
        dashboard = json.load(file)

    queries = []

    def collect(panels):
        for panel in panels:
            expect(
                panel.get("datasource", {"uid": "${datasource}"}).get("uid") == "${datasource}",
                f"dashboard panel {panel.get('title')!r}: datasource uid must be ${{datasource}}",
            )
            queries.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))
            collect(panel.get("panels", []))

    collect(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["query"]["query"], re.S)
            expect(match, f"dashboard variable {variable['name']!r}: expected label_values(SELECTOR, LABEL)")
            queries.append((f"variable {variable['name']}", match.group(1)))

    rules = []
    for index, (title, expr) in enumerate(queries):
        for variable, value in TEMPLATE_VALUES.items():
            expr = expr.replace(variable, value)
        expect("$" not in expr, f"dashboard query of {title!r} uses an unknown template variable: {expr}")
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    with open(output_path, "w", encoding="utf-8") as file:
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, file)
    print(f"wrote {len(rules)} dashboard queries to {output_path}")


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "manifests":
            check_manifests(Path(argv[2]))
            print("manifests, scrape job and alerts agree on labels, port and job name; security settings intact")
        elif len(argv) == 4 and argv[1] == "dashboard-rules":
            write_dashboard_rules(argv[2], argv[3])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
