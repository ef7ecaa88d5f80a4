#!/usr/bin/env python3
"""Checks the Kubernetes manifests: each overlay renders with `kubectl
kustomize`, every rendered object validates against the Kubernetes OpenAPI
schemas offline (kubernetes-validate), and the properties the README
promises hold on the rendered objects. Exits 1 with every failure listed."""
import os
import subprocess
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"
HERE = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(HERE, "overlays", overlay)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"kubectl kustomize {overlay} failed: {out.stderr}")
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    for o in objects:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{overlay}: {o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def port_of(container, name):
    return next((p["containerPort"] for p in container.get("ports", []) if p["name"] == name), None)


def probes_and_security(overlay, pod, container, config):
    """Probes on the admin port tenantry's config names, the config mounted
    as a directory, a locked-down container, resources set."""
    admin = int(config["admin"].rsplit(":", 1)[1])
    for probe, path in [("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/live")]:
        get = container.get(probe, {}).get("httpGet", {})
        port = get.get("port")
        port = port_of(container, port) if isinstance(port, str) else port
        check(get.get("path") == path and port == admin, f"{overlay}: {probe} is not {path} on the admin port {admin}")
    mounts = container.get("volumeMounts", [])
    config_volumes = {v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") == "tenantry"}
    config_mounts = [m for m in mounts if m["name"] in config_volumes]
    check(len(config_mounts) == 1, f"{overlay}: the tenantry ConfigMap is not mounted once")
    check(all("subPath" not in m for m in config_mounts), f"{overlay}: the ConfigMap is mounted with subPath")
    args = container["args"]
    check(args[args.index("--config") + 1].startswith(config_mounts[0]["mountPath"] + "/"),
          f"{overlay}: --config is not in the mounted directory")
    sc = container.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, f"{overlay}: root filesystem not read-only")
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, f"{overlay}: may run as root")
    check(sc.get("allowPrivilegeEscalation") is False, f"{overlay}: privilege escalation allowed")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{overlay}: capabilities not all dropped")
    res = container.get("resources", {})
    check({"cpu", "memory"} <= set(res.get("requests", {})) and {"cpu", "memory"} <= set(res.get("limits", {})),
          f"{overlay}: requests and limits not both set")
    drain = int(args[args.index("--drain") + 1].rstrip("s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(drain < grace, f"{overlay}: terminationGracePeriodSeconds {grace} does not cover --drain {drain}s")


def sidecar():
    objs = render("sidecar")
    config = yaml.safe_load(objs[("ConfigMap", "tenantry")]["data"]["tenants.yaml"])
    pod = objs[("Deployment", "checkout")]["spec"]["template"]["spec"]
    init = [c for c in pod.get("initContainers", []) if c["name"] == "tenantry"]
    check(len(init) == 1, "sidecar: tenantry is not an init container")
    check(all(c["name"] != "tenantry" for c in pod["containers"]), "sidecar: tenantry is also an ordinary container")
    if init:
        check(init[0].get("restartPolicy") == "Always", "sidecar: the init container is not restartPolicy: Always")
        probes_and_security("sidecar", pod, init[0], config)
    app_env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
    listen = config["listen"]
    check(app_env.get("REDIS_URL") == f"redis://localhost:{listen.rsplit(':', 1)[1]}",
          "sidecar: the application does not point at tenantry's listener")
    check(listen.startswith("127.0.0.1:"), "sidecar: tenantry listens beyond the pod's loopback")


def shared():
    objs = render("shared")
    config = yaml.safe_load(objs[("ConfigMap", "tenantry")]["data"]["tenants.yaml"])
    deploy = objs[("Deployment", "tenantry")]
    pod = deploy["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "tenantry")
    probes_and_security("shared", pod, container, config)
    listen_port = int(config["listen"].rsplit(":", 1)[1])
    check(config["listen"].startswith("0.0.0.0:"), "shared: tenantry listens on loopback only")
    check(port_of(container, "redis") == listen_port, "shared: the redis port is not the config's listen port")
    svc = objs[("Service", "tenantry")]
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    check(ports.get("redis", {}).get("targetPort") == "redis", "shared: the Service has no redis port")
    check(ports.get("metrics", {}).get("targetPort") == "metrics", "shared: the Service has no metrics port")
    check(svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"], "shared: Service selects other pods")
    check(("PodDisruptionBudget", "tenantry") in objs, "shared: no PodDisruptionBudget")
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    check(bool(anti), "shared: no pod anti-affinity")
    check(deploy["spec"]["replicas"] >= 2, "shared: a single replica")
    dash = objs.get(("ConfigMap", "tenantry-dashboard"))
    check(dash is not None and dash["metadata"]["labels"].get("grafana_dashboard") == "1"
          and "tenantry.json" in dash["data"], "shared: no labelled Grafana dashboard ConfigMap")


sidecar()
shared()
if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"deploy/kubernetes: overlays sidecar and shared render, validate against Kubernetes {K8S_VERSION}, and check")
