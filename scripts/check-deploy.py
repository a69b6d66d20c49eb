#!/usr/bin/env python3
"""Render every Kubernetes overlay under deploy/k8s/overlays and validate it.

    python3 scripts/check-deploy.py              # what CI runs
    kubectl kustomize deploy/k8s/overlays/prod   # what it checks, as YAML

Each overlay is rendered by kustomize itself (`kubectl kustomize`, which
bundles it), so what is checked is what `kubectl apply -k` would send.
Each rendered resource is validated against the Kubernetes API schemas
(`kubernetes-validate`, strict: unknown fields are errors) for
`--kubernetes-version`; then the resources are checked against each other
(selectors select, ports, claims and ConfigMaps exist, the shutdown fits
the grace period) and against what Sluice reads (probe paths, variable
names).

Needs kubectl with kustomize v5 or later (kubectl 1.27 on;
https://kubernetes.io/docs/tasks/tools/), PyYAML and kubernetes-validate
(`pip install -r deploy/requirements.txt`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy/k8s"
# The overlays use kustomize fields (`labels`) that older kustomize
# versions lack; v5 is what kubectl has bundled since 1.27.
MIN_KUSTOMIZE_MAJOR = 5
# Secrets an operator creates (deploy/README.md says how); never in git.
EXTERNAL_SECRETS = {"sluice-gateway-token", "sluice-postgres", "sluice-s3", "sluice-tokens"}
# Workspace crates that are tools beside Sluice: their variables are not
# ones a Sluice container reads.
NOT_SLUICE_CRATES = {"loadtest", "benches", "tests"}


class RenderError(Exception):
    pass


def find_kubectl() -> str:
    """kubectl's path; exits if it is missing or its kustomize too old, so
    that CI fails rather than checking nothing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("check-deploy: kubectl not found on PATH. Install kubectl (1.27 or later, for "
                         "kustomize v5: https://kubernetes.io/docs/tasks/tools/); it renders the overlays.")
    result = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                            capture_output=True, text=True, timeout=60)
    try:
        version = json.loads(result.stdout)["kustomizeVersion"]
        major = int(re.match(r"v?(\d+)\.", version).group(1))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SystemExit(f"check-deploy: cannot read kustomize's version from `{kubectl} version --client`: "
                         f"{(result.stdout + result.stderr).strip()[:500]}") from None
    if major < MIN_KUSTOMIZE_MAJOR:
        raise SystemExit(f"check-deploy: {kubectl} bundles kustomize {version}; install kubectl 1.27 or "
                         f"later (kustomize v{MIN_KUSTOMIZE_MAJOR}) to render the overlays.")
    return kubectl


def render(kubectl: str, directory: pathlib.Path) -> list[dict]:
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        # kubectl logs its error through klog; the line's header says nothing.
        message = re.sub(r"^[EWI]\d{4} [\d:.]+\s+\d+ \S+\] ", "", result.stderr.strip(), flags=re.M)
        raise RenderError(f"`kubectl kustomize {directory.relative_to(ROOT)}` failed: {message}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def sluice_variables() -> set[str]:
    """The SLUICE_* variable of every flag (clap's `env = "..."`), found
    wherever in the workspace the flag is defined, so that moving flags
    between crates does not break this check."""
    names: set[str] = set()
    for path in ROOT.glob("*/src/**/*.rs"):
        if path.relative_to(ROOT).parts[0] not in NOT_SLUICE_CRATES:
            names.update(re.findall(r'\benv\s*=\s*"(SLUICE_\w+)"', path.read_text()))
    return names


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def pinned(image: str) -> bool:
    # Untagged is :latest to Kubernetes, and kustomize adds no tag an
    # overlay does not give; a colon before the last slash is a port.
    if "@" in image:
        return True
    _, colon, tag = image.rpartition("/")[2].partition(":")
    return bool(colon) and tag != "latest"


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(name) == value for name, value in selector.items())


def check(docs: list[dict], overlay: str, version: str) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
        name = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "ServiceMonitor":
            continue  # a CRD: checked against the Services below
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{name}: {err.message} at {'.'.join(map(str, err.path))}")
    deployments = by_kind.get("Deployment", [])
    services = by_kind.get("Service", [])
    claims = {doc["metadata"]["name"] for doc in by_kind.get("PersistentVolumeClaim", [])}
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in by_kind.get("ConfigMap", [])}
    stores: dict[str, str] = {}
    variables = sluice_variables()
    for deployment in deployments:
        name = f"{overlay}: Deployment/{deployment['metadata']['name']}"
        template = deployment["spec"]["template"]
        if not selects(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]):
            problems.append(f"{name}: its selector does not select its own pods")
        pod = template["spec"]
        for volume in pod.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                problems.append(f"{name}: volume {volume['name']} claims {claim}, which is not defined")
            secret = volume.get("secret", {}).get("secretName")
            if secret and secret not in EXTERNAL_SECRETS:
                problems.append(f"{name}: volume {volume['name']} mounts secret {secret}, neither defined nor documented")
            config_map = volume.get("configMap", {})
            if config_map and not config_map.get("optional") and config_map.get("name") not in config_maps:
                problems.append(f"{name}: volume {volume['name']} mounts ConfigMap {config_map.get('name')}, which is not defined")
        for container in pod["containers"]:
            ports = {port["name"] for port in container.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(probe_name, {}).get("httpGet")
                if probe and probe["port"] not in ports:
                    problems.append(f"{name}: {probe_name} uses port {probe['port']}, not a container port")
            env = {item["name"]: item for item in container.get("env", [])}
            for variable, item in env.items():
                # Defined by some command; which command reads it is for the
                # reader of the flags (a registry ignores SLUICE_LISTEN).
                if variable.startswith("SLUICE_") and variable not in variables:
                    problems.append(f"{name}: {variable} is not a variable Sluice defines")
                secret = item.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
                if secret and secret not in EXTERNAL_SECRETS:
                    problems.append(f"{name}: secret {secret} is neither defined nor documented")
                config_ref = item.get("valueFrom", {}).get("configMapKeyRef")
                if config_ref and config_ref.get("key") not in config_maps.get(config_ref["name"], {}):
                    problems.append(f"{name}: {variable} reads {config_ref['name']}/{config_ref.get('key')}, which is not defined")
                if variable == "SLUICE_STORE":
                    stores[name] = item.get("value") or str(config_ref)
            for source in container.get("envFrom", []):
                secret = source.get("secretRef", {}).get("name")
                if secret and secret not in EXTERNAL_SECRETS:
                    problems.append(f"{name}: envFrom secret {secret} is neither defined nor documented")
                config_ref = source.get("configMapRef", {})
                if config_ref and not config_ref.get("optional") and config_ref.get("name") not in config_maps:
                    problems.append(f"{name}: envFrom ConfigMap {config_ref.get('name')} is not defined")
            if container.get("args", [])[:1] == ["serve"]:
                ready = container.get("readinessProbe", {}).get("httpGet", {}).get("path")
                if ready != "/v2/health/ready":
                    problems.append(f"{name}: a gateway's readiness is /v2/health/ready, not {ready}")
                delay = int(env.get("SLUICE_SHUTDOWN_DELAY_MS", {}).get("value", 0))
                drain = int(env.get("SLUICE_DRAIN_TIMEOUT_MS", {}).get("value", 20000))
                grace = pod.get("terminationGracePeriodSeconds", 30) * 1000
                if delay + drain >= grace:
                    problems.append(f"{name}: shutdown delay + drain ({delay + drain} ms) must stay under the grace period ({grace} ms)")
                probe = container["readinessProbe"]
                unready_after = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3) * 1000
                if delay < unready_after:
                    problems.append(f"{name}: the shutdown delay ({delay} ms) ends before the readiness probe "
                                    f"can fail ({unready_after} ms: period times failure threshold)")
    # The registry reads the logs the gateways write: one store for all.
    if len(set(stores.values())) > 1:
        problems.append(f"{overlay}: the Deployments name different stores: {stores}")
    pods = [(d, d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"]) for d in deployments]
    for service in services:
        name = f"{overlay}: Service/{service['metadata']['name']}"
        selected = [spec for _, labels, spec in pods if selects(service["spec"]["selector"], labels)]
        if not selected:
            problems.append(f"{name}: selects no pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            names = {p.get("name") for spec in selected for c in spec["containers"] for p in c.get("ports", [])}
            if isinstance(target, str) and target not in names:
                problems.append(f"{name}: targetPort {target} is no container port of its pods")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for doc in by_kind.get(kind, []):
            selector = doc["spec"].get("selector", doc["spec"].get("podSelector"))["matchLabels"]
            if not any(selects(selector, labels) for _, labels, _ in pods):
                problems.append(f"{overlay}: {kind}/{doc['metadata']['name']} selects no pods")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if not any(d["metadata"]["name"] == target["name"] for d in deployments):
            problems.append(f"{overlay}: HorizontalPodAutoscaler/{hpa['metadata']['name']} scales a missing {target['name']}")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            problems.append(f"{overlay}: HorizontalPodAutoscaler/{hpa['metadata']['name']}: min above max")
    for monitor in by_kind.get("ServiceMonitor", []):
        selected = [s for s in services if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        ports = {port["name"] for service in selected for port in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in ports:
                problems.append(f"{overlay}: ServiceMonitor/{monitor['metadata']['name']} scrapes port {endpoint['port']}, on no selected Service")
    for image in sorted({c["image"] for d in deployments for c in containers(d)}):
        if not pinned(image):
            problems.append(f"{overlay}: image {image} is not pinned to a tag or digest")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default="1.30")
    args = parser.parse_args()
    kubectl = find_kubectl()
    overlays = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
    problems: list[str] = []
    for overlay in overlays:
        try:
            docs = render(kubectl, K8S / "overlays" / overlay)
        except RenderError as err:
            problems.append(f"{overlay}: {err}")
            print(f"{overlay}: not rendered, 1 problem")
            continue
        found = check(docs, overlay, args.kubernetes_version)
        problems.extend(found)
        kinds = sorted({doc["kind"] for doc in docs})
        print(f"{overlay}: {len(docs)} resources ({', '.join(kinds)}), {len(found)} problems")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
