#!/usr/bin/env python3
"""Render every Kubernetes overlay under deploy/k8s/overlays and validate it.

    python3 scripts/check-deploy.py            # what CI runs
    python3 scripts/check-deploy.py --print prod   # the rendered overlay, as YAML

Each rendered resource is validated against the Kubernetes API schemas
(`kubernetes-validate`, strict: unknown fields are errors) for
`--kubernetes-version`; then the resources are checked against each other
(selectors select, ports and claims exist, the shutdown fits the grace
period) and against what Sluice reads (probe paths, variable names).

`kubectl kustomize` (Go) cannot be installed from the registries this
project's machines reach, so the overlays are rendered here by a small
renderer of the kustomize features they use: `resources`, `namespace`,
`images`, `labels` (metadata only) and strategic-merge `patches` by file
(maps merged, lists merged on kustomize's keys for containers, env,
volumes, volume mounts, ports and spread constraints; no `$patch`
directives). Any other kustomization field is refused. Render with
kustomize itself to deploy.

Needs PyYAML and kubernetes-validate (`pip install -r deploy/requirements.txt`).
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import re
import sys

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy/k8s"
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "labels", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
# Secrets an operator creates (deploy/README.md says how); never in git.
EXTERNAL_SECRETS = {"sluice-gateway-token", "sluice-postgres", "sluice-s3", "sluice-tokens"}
SLUICE_FLAGS_SOURCES = [ROOT / "gateway/src/config.rs", ROOT / "registry/src/config.rs"]


def load_yaml_docs(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


# The strategic-merge key of each list field the manifests use (Kubernetes'
# patchMergeKey); lists of other fields are replaced, as kustomize does.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "ports": "containerPort", "topologySpreadConstraints": "topologyKey",
}


def merge(base, patch, field=None):
    """Strategic merge as kustomize does it for these kinds: maps merge,
    lists merge on their field's key, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(name.startswith("$") for name in patch):
            raise SystemExit(f"patch directives are not implemented: {sorted(patch)}")
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    merge_key = MERGE_KEYS.get(field)
    if merge_key and isinstance(base, list) and isinstance(patch, list):
        merged = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, existing in enumerate(merged) if existing.get(merge_key) == item[merge_key]), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = merge(merged[index], item)
        return merged
    return copy.deepcopy(patch)


def render(directory: pathlib.Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise SystemExit(f"{directory}: kustomization fields this renderer does not implement: {sorted(unknown)}")
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else load_yaml_docs(path))
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise SystemExit(f"{directory}: only `patches: - path: FILE` is implemented, got {patch_entry}")
        for patch in load_yaml_docs(directory / patch_entry["path"]):
            matches = [i for i, doc in enumerate(docs) if key(doc) == key(patch)]
            if len(matches) != 1:
                raise SystemExit(f"{directory}: patch {key(patch)} matches {len(matches)} resources")
            docs[matches[0]] = merge(docs[matches[0]], patch)
    for label in kustomization.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise SystemExit(f"{directory}: labels into selectors or templates are not implemented")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in containers(doc):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


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
    flags = "".join(path.read_text() for path in SLUICE_FLAGS_SOURCES)
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
        for container in pod["containers"]:
            ports = {port["name"] for port in container.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(probe_name, {}).get("httpGet")
                if probe and probe["port"] not in ports:
                    problems.append(f"{name}: {probe_name} uses port {probe['port']}, not a container port")
            env = {item["name"]: item for item in container.get("env", [])}
            for variable, item in env.items():
                # Defined by some command; which command reads it is for the
                # reader of config.rs (a registry ignores SLUICE_LISTEN).
                if variable.startswith("SLUICE_") and f'"{variable}"' not in flags:
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
    if re.search(r":latest$", " ".join(c["image"] for d in deployments for c in containers(d))):
        problems.append(f"{overlay}: an image is not pinned to a tag")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default="1.30")
    parser.add_argument("--print", metavar="OVERLAY", help="print the rendered overlay and exit")
    args = parser.parse_args()
    overlays = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
    if args.print:
        print(yaml.safe_dump_all(render(K8S / "overlays" / args.print), sort_keys=False))
        return 0
    problems: list[str] = []
    for overlay in overlays:
        docs = render(K8S / "overlays" / overlay)
        found = check(docs, overlay, args.kubernetes_version)
        problems.extend(found)
        kinds = sorted({doc["kind"] for doc in docs})
        print(f"{overlay}: {len(docs)} resources ({', '.join(kinds)}), {len(found)} problems")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
