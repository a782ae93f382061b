"""Kubernetes objects for one environment of an app: what ``lumi deploy`` renders.

Per service (kebab-cased name, e.g. ``inventory``):

* a **Deployment** — or a **DaemonSet** for ``placement = "per-node"`` — running the service's
  image (``lumi build image``) as ``lumi serve SERVICE``, non-root with a read-only root file
  system; startup, liveness and readiness probes on the health endpoints; requests and limits;
  ``terminationGracePeriodSeconds`` covering a preStop pause (so endpoints drain from the
  Service before SIGTERM) plus the app's grace period; the app's ConfigMap (environment, broker
  URL, every capability's endpoints) and any Secret references of ``[services.X.kubernetes]``;
* a **Service per RPC transport port** (``inventory-http``, ``inventory-grpc``), so
  capabilities reach each other by Service DNS name; a per-node service's Services have
  ``internalTrafficPolicy: Local`` (callers reach the replica on their own node);
* optionally a **HorizontalPodAutoscaler** (``autoscale``; function services always get one,
  from ``min_instances``/``max_instances``, since a Deployment cannot scale to zero by itself)
  and a **PodDisruptionBudget** (``min_available``).

Plus one **ConfigMap** for the app. Objects are plain dicts; :mod:`lumi.targets.kustomize`
lays them out as a base and overlays.

With ``security.mtls`` on, each pod mounts its service's TLS Secret (``<service>-tls``:
``tls.crt``, ``tls.key``, ``ca.crt``) read-only at :data:`TLS_MOUNT`, named by
``LUMI_TLS_DIR``, and probes speak TLS (``httpGet`` with ``scheme: HTTPS``, which needs no
client certificate; gRPC through the image's health check command, since the kubelet's gRPC
probe has no TLS). The Secret comes from ``security.kubernetes``: issued by ``lumi deploy``
from the app's CA (a Kustomize ``secretGenerator``, see :mod:`lumi.targets.kustomize`), or a
cert-manager ``Certificate`` rendered here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from lumi.config import AppConfig
from lumi.model.interface import ServiceInterface, interface
from lumi.runtimes import environment as envvars
from lumi.runtimes.engine import read_images
from lumi.security import identity
from lumi.security.setup import TLS_DIR_VARIABLE
from lumi.targets.image import USER_ID, image_ref

Object = dict[str, Any]
PRESTOP_SECONDS = 5  # long enough for kube-proxy and endpoint watchers to drop a terminating pod
STATE_MOUNT = "/app/.lumi"
TLS_MOUNT = "/var/run/lumi/tls"
HEALTHCHECK = ["python", "-m", "lumi.runtimes.healthcheck"]
_APP_PROTOCOLS = {"http": "http", "grpc": "kubernetes.io/h2c"}


@dataclasses.dataclass
class Rendered:
    """The objects of one environment, and what the user should know about them."""

    objects: list[Object]
    config: dict[str, str]  # the app ConfigMap's data
    config_name: str
    warnings: list[str]
    # mTLS with certificates from the app's CA: service → what its Secret's certificate names
    certificates: dict[str, CertificateRequest] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CertificateRequest:
    """The certificate of one service's TLS Secret."""

    secret: str  # the Secret's name
    uri: str  # its SPIFFE identity
    dns: tuple[str, ...]
    lifetime: float


def tls_secret(service: str) -> str:
    """The name of ``service``'s TLS Secret: ``orders-tls``."""
    return f"{kebab(service)}-tls"


def certificate_request(config: AppConfig, service: str) -> CertificateRequest:
    """What ``service``'s certificate names: its identity, the DNS name callers expect, its
    Services' names (short and in the namespace-less form curl uses inside the cluster)."""
    names = [identity.server_name(config.name, service), "localhost"]
    names += [f"{kebab(service)}-{t}" for t in _transports(config, service)]
    return CertificateRequest(
        tls_secret(service),
        identity.service_id(config.name, service),
        tuple(names),
        config.security.kubernetes.cert_lifetime,
    )


def kebab(name: str) -> str:
    """``OrderHistory`` → ``order-history`` (a valid DNS label)."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
    return re.sub(r"[^a-z0-9-]+", "-", text).strip("-")[:63]


def render(config: AppConfig) -> Rendered:
    """Every object of ``config`` (one environment of the app) for Kubernetes."""
    classes = {cls.name: cls for cls in config.load_services()}
    interfaces = {name: interface(cls) for name, cls in classes.items()}
    images = read_images(config.root)
    warnings = _events_warnings(config, interfaces)
    config_name = f"{kebab(config.name)}-config"
    data: dict[str, str] = {}
    if len({config.binding(name).events for name in interfaces}) == 1:
        # One broker for all: operators may point it elsewhere without a rebuild.
        data[envvars.EVENTS] = config.defaults.events or "embedded"
    if config.environment:
        data[envvars.ENV] = config.environment
    for name in interfaces:
        data[envvars.endpoints_variable(name)] = " ".join(_endpoints(config, name))
    objects: list[Object] = []
    refs = _image_refs(config, interfaces, images)
    for name, iface in interfaces.items():
        objects += _service_objects(config, iface, refs[name], config_name, warnings)
    security = config.security
    certificates: dict[str, CertificateRequest] = {}
    if security.mtls and security.kubernetes.certificates == "cert-manager":
        objects += [_certificate(config, iface) for iface in interfaces.values()]
    elif security.mtls:
        certificates = {name: certificate_request(config, name) for name in interfaces}
    unbuilt = [name for name in interfaces if name not in images]
    if unbuilt:
        warnings.append(
            f"no image built for {', '.join(unbuilt)}: the references are what "
            f"`lumi build image` would tag (build them before applying)"
        )
    return Rendered(objects, dict(sorted(data.items())), config_name, warnings, certificates)


def _certificate(config: AppConfig, iface: ServiceInterface) -> Object:
    """The cert-manager Certificate of ``iface``'s TLS Secret (``security.kubernetes``)."""
    want = certificate_request(config, iface.name)
    own = config.security.kubernetes
    key: Object = (
        {"algorithm": "Ed25519"}
        if config.security.key_type == "ed25519"
        else {"algorithm": "ECDSA", "size": 256}
    )
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": _metadata(config, iface, kebab(iface.name)),
        "spec": {
            "secretName": want.secret,
            "duration": _duration(want.lifetime),
            "renewBefore": _duration(want.lifetime / 3),
            "privateKey": {**key, "rotationPolicy": "Always"},
            "uris": [want.uri],
            "dnsNames": list(want.dns),
            "usages": ["digital signature", "server auth", "client auth"],
            "issuerRef": {"name": own.issuer, "kind": own.issuer_kind, "group": "cert-manager.io"},
        },
    }


def _duration(seconds: float) -> str:
    """A Go duration (what cert-manager reads): ``720h0m0s``."""
    total = int(seconds)
    return f"{total // 3600}h{total % 3600 // 60}m{total % 60}s"


def image_names(config: AppConfig) -> dict[str, str]:
    """Service → the image name (no tag or digest) its workload references, as :func:`render`
    writes it: what a pinning overlay's ``images`` entries match."""
    classes = {cls.name: cls for cls in config.load_services()}
    interfaces = {name: interface(cls) for name, cls in classes.items()}
    refs = _image_refs(config, interfaces, read_images(config.root))
    return {name: _without_tag(ref) for name, ref in refs.items()}


def _image_refs(
    config: AppConfig, interfaces: dict[str, ServiceInterface], images: Mapping[str, Any]
) -> dict[str, str]:
    return {
        name: images[name].ref if name in images else image_ref(config, name, iface.version)
        for name, iface in interfaces.items()
    }


def _without_tag(ref: str) -> str:
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _events_warnings(config: AppConfig, interfaces: dict[str, ServiceInterface]) -> list[str]:
    """A broker local to each pod is a mistake in a cluster, unless a Secret replaces it."""
    events = config.defaults.events or "embedded"
    if events.split("://", 1)[0].split("?", 1)[0] not in ("embedded", "memory"):
        return []
    users = [n for n, i in interfaces.items() if i.events or i.subscriptions]
    if all(envvars.EVENTS in config.service(n).kubernetes.secrets for n in users):
        return []
    where = f"env.{config.environment}.defaults" if config.environment else "defaults"
    return [
        f"events = {events!r} keeps each pod's events to itself; set {where}.events to a "
        f"broker every pod reaches (redis://, sns://, ...) or LUMI_EVENTS from a Secret"
    ]


def _transports(config: AppConfig, name: str) -> list[str]:
    return config.binding(name).rpc or ["http"]


def _endpoints(config: AppConfig, name: str) -> list[str]:
    return [
        f"{t}://{kebab(name)}-{t}:{envvars.container_port(t, i)}"
        for i, t in enumerate(_transports(config, name))
    ]


def _labels(config: AppConfig, name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": kebab(name), "app.kubernetes.io/part-of": kebab(config.name)}


def _metadata(config: AppConfig, iface: ServiceInterface, name: str) -> Object:
    labels = {
        **_labels(config, iface.name),
        "app.kubernetes.io/version": re.sub(r"[^A-Za-z0-9_.-]", "-", iface.version)[:63],
        "app.kubernetes.io/managed-by": "lumi",
    }
    return {"name": name, "labels": labels, "annotations": {"lumi.dev/service": iface.name}}


def _service_objects(
    config: AppConfig, iface: ServiceInterface, image: str, config_name: str, warnings: list[str]
) -> list[Object]:
    name = iface.name
    own = config.service(name)
    per_node = own.placement == "per-node"
    runtime = config.binding(name).runtime or "process"
    selector = _labels(config, name)
    pod = _pod(config, iface, image, config_name)
    workload: Object
    if per_node:
        workload = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _metadata(config, iface, kebab(name)),
            "spec": {
                "selector": {"matchLabels": selector},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": pod,
            },
        }
    else:
        workload = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(config, iface, kebab(name)),
            "spec": {
                "replicas": own.replicas,
                "selector": {"matchLabels": selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": pod,
            },
        }
    objects = [workload]
    for position, transport in enumerate(_transports(config, name)):
        port = envvars.container_port(transport, position)
        spec: Object = {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {
                    "name": transport,
                    "port": port,
                    "targetPort": transport,
                    "protocol": "TCP",
                    **(
                        {"appProtocol": _APP_PROTOCOLS[transport]}
                        if transport in _APP_PROTOCOLS
                        else {}
                    ),
                }
            ],
        }
        if per_node:
            spec["internalTrafficPolicy"] = "Local"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(config, iface, f"{kebab(name)}-{transport}"),
                "spec": spec,
            }
        )
    scale = own.kubernetes.autoscale
    bounds: tuple[int, int, int] | None = None
    if scale is not None:
        bounds = (scale.min, scale.max, scale.cpu_percent)
    elif runtime == "function":
        fn = own.function
        bounds = (max(1, fn.min_instances), max(1, fn.max_instances), 80)
    if bounds is not None and per_node:
        warnings.append(f"{name} runs on every node (a DaemonSet): autoscale does not apply")
    elif bounds is not None:
        objects.append(_autoscaler(config, iface, *bounds))
    if own.kubernetes.min_available is not None:
        objects.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _metadata(config, iface, kebab(name)),
                "spec": {
                    "minAvailable": own.kubernetes.min_available,
                    "selector": {"matchLabels": selector},
                },
            }
        )
    return objects


def _autoscaler(
    config: AppConfig, iface: ServiceInterface, low: int, high: int, cpu: int
) -> Object:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(config, iface, kebab(iface.name)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": kebab(iface.name),
            },
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    },
                }
            ],
        },
    }


def _pod(config: AppConfig, iface: ServiceInterface, image: str, config_name: str) -> Object:
    name = iface.name
    own = config.service(name)
    transports = _transports(config, name)
    ports = [
        {"name": t, "containerPort": envvars.container_port(t, i), "protocol": "TCP"}
        for i, t in enumerate(transports)
    ]
    env: list[Object] = [
        {"name": envvars.HOST, "value": "0.0.0.0"},  # the pod's own address; pods are isolated
        *(
            {"name": envvars.port_variable(t), "value": str(envvars.container_port(t, i))}
            for i, t in enumerate(transports)
        ),
        {"name": envvars.NODE, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "LUMI_LOG_JSON", "value": "1"},
        *([{"name": TLS_DIR_VARIABLE, "value": TLS_MOUNT}] if config.security.mtls else []),
        *({"name": k, "value": v} for k, v in sorted(own.environment.items())),
    ]
    for variable, ref in sorted(own.kubernetes.secrets.items()):
        secret, _, key = ref.partition("/")
        env.append(
            {
                "name": variable,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key or variable}},
            }
        )
    resources: Object = {
        "requests": {"cpu": own.kubernetes.cpu, "memory": own.kubernetes.memory},
    }
    limits = {
        k: v
        for k, v in (("cpu", own.kubernetes.cpu_limit), ("memory", own.kubernetes.memory_limit))
        if v is not None
    }
    if limits:
        resources["limits"] = limits
    grace = config.defaults.grace_period
    container: Object = {
        "name": kebab(name),
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": ports,
        "envFrom": [{"configMapRef": {"name": config_name}}],
        "env": env,
        "resources": resources,
        **_probes(transports, config.defaults.start_timeout, tls=config.security.mtls),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes: list[Object] = [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    if config.security.mtls:
        container["volumeMounts"].append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        # 0440 and fsGroup: readable by the service's user only (the files are symbolic links
        # into a generation the kubelet swaps, so renewals reach the running replica)
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret(name),
                                                  "defaultMode": 0o440}})  # fmt: skip
    return {
        "metadata": {"labels": _labels(config, name)},
        "spec": {
            "terminationGracePeriodSeconds": PRESTOP_SECONDS + math.ceil(grace) + 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": USER_ID,
                "runAsGroup": USER_ID,
                "fsGroup": USER_ID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
        },
    }


def _probes(transports: list[str], start_timeout: float, *, tls: bool = False) -> Object:
    """Probes on the health endpoints: HTTP if the service serves it, else gRPC's health
    service, else the port itself. Over TLS: HTTPS (the kubelet does not check the certificate
    and the health GETs need no client certificate); for gRPC the image's health check, which
    probes with the replica's own certificate."""
    if "http" in transports:
        scheme = {"scheme": "HTTPS"} if tls else {}
        alive: Object = {"httpGet": {"path": "/healthz", "port": "http", **scheme}}
        ready: Object = {"httpGet": {"path": "/readyz", "port": "http", **scheme}}
    elif "grpc" in transports and tls:
        alive = ready = {"exec": {"command": HEALTHCHECK}}
    elif "grpc" in transports:
        port = envvars.container_port("grpc", transports.index("grpc"))
        alive = ready = {"grpc": {"port": port}}
    else:
        alive = ready = {"tcpSocket": {"port": transports[0]}}
    return {
        "startupProbe": {
            **alive,
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, math.ceil(start_timeout)),
        },
        "livenessProbe": {**alive, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
    }
