#!/usr/bin/env python3
"""Validates the deployables offline: the Kubernetes manifests of deploy/k8s/base and compose.yaml.

1. Renders deploy/k8s/base/kustomization.yaml the way kustomize does for the fields it uses
   (resources, labels, images; any other field is refused, so this renderer never silently
   differs from kustomize) and checks that every listed file exists.
2. Validates every rendered object against the Kubernetes JSON schemas shipped by the PyPI
   package kubernetes-validate (strict: unknown fields are errors), for each version in
   K8S_VERSIONS.
3. Checks what the schemas cannot: a Deployment per binary with /healthz liveness and /readyz
   readiness probes on a declared port, resource requests, a PodDisruptionBudget selecting
   each Deployment, envFrom references that exist, a Job running `rvcctl migrate`, an HPA on
   the outbox lag for every worker and one on CPU for the ML service and the read side.
4. compose.yaml: every binary runs, every service restarts, every long-running one has a
   healthcheck, depends_on names exist, the image carries the model, the bucket and topic are
   created.

Run with the repo venv: .venv/bin/python scripts/validate-manifests.py (make test-manifests).
Exit 0 when everything holds, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import copy
import os
import sys

import yaml
from kubernetes_validate import utils as kv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "deploy", "k8s", "base")
K8S_VERSIONS = ["1.30.0", "1.37.0"]
BINARIES = ["rvc-ingest-api", "rvc-catalog", "rvc-ml-service", "rvc-image-uploader", "rvc-vectorizer", "rvc-relay",
            "rvc-maintenance"]
WORKERS = {"rvc-image-uploader": "upload_images", "rvc-vectorizer": "vectorize", "rvc-relay": "publish"}
CPU_SCALED = ["rvc-ml-service", "rvc-catalog"]
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "labels", "images"}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def render(base: str) -> list[dict]:
    with open(os.path.join(base, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    unknown = set(k) - KUSTOMIZE_FIELDS
    if unknown:
        problem(f"kustomization.yaml: fields {sorted(unknown)} are not rendered by this check; extend it")
    objects: list[dict] = []
    for res in k.get("resources", []):
        path = os.path.join(base, res)
        if not os.path.isfile(path):
            problem(f"kustomization.yaml lists {res}, which does not exist")
            continue
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    doc["__file"] = res
                    objects.append(doc)
    listed = set(k.get("resources", []))
    for name in sorted(os.listdir(base)):
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml" and name not in listed:
            problem(f"{name} is in deploy/k8s/base but not listed in kustomization.yaml")
    for entry in k.get("labels", []):
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(entry.get("pairs", {}))
    images = {i["name"]: i for i in k.get("images", [])}
    for obj in objects:
        for c in pod_spec(obj).get("containers", []):
            name, _, tag = c.get("image", "").partition(":")
            if name in images:
                i = images[name]
                c["image"] = f"{i.get('newName', name)}:{i.get('newTag', tag or 'latest')}"
    return objects


def pod_spec(obj: dict) -> dict:
    kind = obj.get("kind")
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    return {}


def name_of(obj: dict) -> str:
    return f"{obj['__file']}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_schemas(objects: list[dict]) -> int:
    n = 0
    for obj in objects:
        clean = {k: v for k, v in obj.items() if k != "__file"}
        for version in K8S_VERSIONS:
            try:
                kv.validate(clean, version, strict=True)
                n += 1
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problem(f"{name_of(obj)}: Kubernetes {version} schema: {path}: {e.message}")
            except kv.SchemaNotFoundError:
                problem(f"{name_of(obj)}: no Kubernetes {version} schema for {obj.get('apiVersion')} {obj.get('kind')}")
    return n


def selects(selector: dict, labels: dict) -> bool:
    ml = selector.get("matchLabels", {})
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


def check_semantics(objects: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for o in objects:
        by_kind.setdefault(o.get("kind"), []).append(o)
    names = {(o.get("kind"), o["metadata"]["name"]) for o in objects}
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}

    for b in BINARIES:
        if b not in deployments:
            problem(f"no Deployment for {b}")
    for d in deployments.values():
        n = name_of(d)
        tmpl_labels = d["spec"]["template"]["metadata"].get("labels", {})
        if not selects(d["spec"]["selector"], tmpl_labels):
            problem(f"{n}: selector does not select its pod template")
        if not any(selects(p["spec"]["selector"], tmpl_labels) for p in by_kind.get("PodDisruptionBudget", [])):
            problem(f"{n}: no PodDisruptionBudget selects it")
        for c in pod_spec(d).get("containers", []):
            ports = {p.get("name") for p in c.get("ports", [])} | {p.get("containerPort") for p in c.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path:
                    problem(f"{n}: container {c['name']}: {probe} must GET {path}")
                elif get.get("port") not in ports:
                    problem(f"{n}: container {c['name']}: {probe} port {get.get('port')} is not a container port")
            req = c.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(req):
                problem(f"{n}: container {c['name']}: resource requests need cpu and memory")
    for o in objects:
        for c in pod_spec(o).get("containers", []):
            for ref in c.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in ref and (kind, ref[key]["name"]) not in names:
                        problem(f"{name_of(o)}: envFrom {kind} {ref[key]['name']} is not in the kustomization")
    jobs = by_kind.get("Job", [])
    if not any(c.get("command") == ["rvcctl", "migrate"] for j in jobs for c in pod_spec(j).get("containers", [])):
        problem("no Job runs `rvcctl migrate`")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    for h in hpas.values():
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in names:
            problem(f"{name_of(h)}: scales {ref['kind']}/{ref['name']}, which is not in the kustomization")
    for w, kind in WORKERS.items():
        h = hpas.get(w)
        if h is None:
            problem(f"no HorizontalPodAutoscaler for {w}")
            continue
        lag = [m for m in h["spec"].get("metrics", []) if m.get("type") == "External"
               and m["external"]["metric"]["name"].startswith("rvc_outbox_")
               and m["external"]["metric"].get("selector", {}).get("matchLabels", {}).get("kind") == kind]
        if not lag:
            problem(f"{name_of(h)}: no external rvc_outbox_* metric of kind {kind} (outbox lag)")
    for d in CPU_SCALED:
        h = hpas.get(d)
        if h is None:
            problem(f"no HorizontalPodAutoscaler for {d}")
        elif not any(m.get("type") == "Resource" and m["resource"].get("name") == "cpu"
                     for m in h["spec"].get("metrics", [])):
            problem(f"{name_of(h)}: no cpu Resource metric")


def check_compose() -> None:
    with open(os.path.join(REPO, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    one_shot = {"migrate", "minio-init", "kafka-init"}
    for name, s in services.items():
        if "restart" not in s:
            problem(f"compose.yaml: service {name} has no restart policy")
        if name not in one_shot and "healthcheck" not in s:
            problem(f"compose.yaml: service {name} has no healthcheck")
        deps = s.get("depends_on", {})
        for dep in deps if isinstance(deps, (list, dict)) else []:
            if dep not in services:
                problem(f"compose.yaml: service {name} depends on unknown service {dep}")
            elif isinstance(deps, dict):
                cond = deps[dep].get("condition")
                if cond == "service_healthy" and "healthcheck" not in services[dep]:
                    problem(f"compose.yaml: {name} waits for {dep} to be healthy, which has no healthcheck")
                if cond == "service_completed_successfully" and dep not in one_shot:
                    problem(f"compose.yaml: {name} waits for {dep} to complete, which is not one-shot")
        for vol in s.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("./") and not os.path.exists(os.path.join(REPO, src)):
                problem(f"compose.yaml: service {name} mounts {src}, which does not exist")
        build = s.get("build")
        if build and not os.path.isfile(os.path.join(REPO, build.get("context", "."), build.get("dockerfile", "Dockerfile"))):
            problem(f"compose.yaml: service {name} builds from a missing Dockerfile")
    cmds = " ".join(" ".join(map(str, s.get("command", []) or [])) for s in services.values())
    run = {(c.split() if isinstance(c, str) else list(c))[0]
           for c in (s.get("command") for s in services.values()) if c}
    for b in BINARIES:
        if b not in run:
            problem(f"compose.yaml: no service runs {b}")
    if "mc mb" not in cmds:
        problem("compose.yaml: nothing creates the bucket")
    if "kafka-topics.sh" not in cmds or "--create" not in cmds:
        problem("compose.yaml: nothing creates the topic")
    with open(os.path.join(REPO, "deploy", "Dockerfile")) as f:
        dockerfile = f.read()
    if "convert_efficientnet.py" not in dockerfile or "ML_MODEL_PATH=" not in dockerfile:
        problem("deploy/Dockerfile: the image does not build the model and point ML_MODEL_PATH at it")


def main() -> int:
    objects = render(BASE)
    checked = validate_schemas(objects)
    check_semantics(objects)
    check_compose()
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"manifests: {len(problems)} problem(s)")
        return 1
    print(f"manifests: {len(objects)} Kubernetes objects valid against Kubernetes "
          f"{' and '.join(K8S_VERSIONS)} (strict, {checked} checks), semantics and compose.yaml ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
