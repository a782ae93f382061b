"""``lumi deploy --target kubernetes``: a Kustomize base plus one overlay per environment.

::

    DIR/base/kustomization.yaml          the app's ConfigMap (generated) and every object of
    DIR/base/<service>-<kind>.yaml       the default configuration, one file each
    DIR/overlays/<env>/kustomization.yaml   namespace <app>-<env>, the ConfigMap for <env>,
    DIR/overlays/<env>/*.yaml            objects only <env> has, and JSON patches turning
                                         each base object into <env>'s

An overlay is computed, not hand-written: the environment's objects are rendered in full and
compared with the base's, so ``kubectl kustomize DIR/overlays/<env>`` builds exactly what
:func:`lumi.targets.kubernetes.render` makes for that environment (a test checks it). Output is
deterministic, so it can be committed and diffed; ``--check`` says whether DIR is up to date.

With mTLS on and ``security.kubernetes.certificates = "secret"``, a kustomization also has a
``secretGenerator`` per service making its ``kubernetes.io/tls`` Secret from
``tls/<service>/{tls.crt,tls.key,ca.crt}`` beside it. Those files hold private keys, so they
are not part of the rendered output: :func:`write_certificates` issues them from the app's CA
(when missing, from another CA, or past a third of their lifetime) and a ``.gitignore`` keeps
them out of version control.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from lumi.config import AppConfig, load_config
from lumi.model.errors import AppError
from lumi.security.bundle import write_bundle
from lumi.security.ca import CertificateAuthority
from lumi.targets.kubernetes import CertificateRequest, Object, Rendered, kebab, render
from lumi.transports.tls import CA_FILE, CERT_FILE, KEY_FILE

HEADER = "# Rendered by `lumi deploy --target kubernetes`; rewritten on every deploy.\n"
KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}


@dataclasses.dataclass
class Layout:
    """Files (relative path → text) of a base and the requested overlays."""

    files: dict[str, str]
    warnings: dict[str, list[str]]  # warning → the environments it concerns ("base" too)
    # folder ("base", "overlays/prod") → the certificates its secretGenerator reads, and the
    # environment whose CA issues them (None: the default configuration)
    certificates: dict[str, tuple[str | None, list[CertificateRequest]]] = dataclasses.field(
        default_factory=dict
    )


TLS_FOLDER = "tls"
GITIGNORE = "# private keys: issued by lumi deploy, never committed\n*\n"
_TLS_FILES = (CERT_FILE, KEY_FILE, CA_FILE)


def _secret_generators(wanted: list[CertificateRequest]) -> list[dict[str, Any]]:
    return [
        {
            "name": want.secret,
            "type": "kubernetes.io/tls",
            "files": [f"{name}={TLS_FOLDER}/{want.secret}/{name}" for name in _TLS_FILES],
            # The same name across renewals: the kubelet updates the mounted files in place
            # and replicas reload them (no restart)
            "options": {"disableNameSuffixHash": True},
        }
        for want in wanted
    ]


class _Dumper(yaml.SafeDumper):
    """Block style, no anchors, and multi-line strings (inline patches) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def file_name(obj: Object) -> str:
    return f"{obj['metadata']['name']}-{obj['kind'].lower()}.yaml"


def key(obj: Object) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def json_patch(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``old`` into ``new`` (lists of equal length element by
    element, otherwise whole)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for name in old:
            if name not in new:
                ops.append({"op": "remove", "path": f"{path}/{_escape(name)}"})
        for name, value in new.items():
            if name not in old:
                ops.append({"op": "add", "path": f"{path}/{_escape(name)}", "value": value})
            else:
                ops += json_patch(old[name], value, f"{path}/{_escape(name)}")
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            op
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for op in json_patch(a, b, f"{path}/{i}")
        ]
    return [{"op": "replace", "path": path, "value": new}]


def _escape(name: str) -> str:
    return str(name).replace("~", "~0").replace("/", "~1")


def _literals(data: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in data.items()]


def base_files(rendered: Rendered) -> dict[str, str]:
    files = {f"base/{file_name(o)}": HEADER + to_yaml(o) for o in rendered.objects}
    kustomization = {
        **KUSTOMIZATION,
        "resources": sorted(name.removeprefix("base/") for name in files),
        "configMapGenerator": [
            {"name": rendered.config_name, "literals": _literals(rendered.config)}
        ],
    }
    if rendered.certificates:
        kustomization["secretGenerator"] = _secret_generators(list(rendered.certificates.values()))
    files["base/kustomization.yaml"] = HEADER + to_yaml(kustomization)
    return files


def overlay_files(app: str, env: str, base: Rendered, mine: Rendered) -> dict[str, str]:
    """The overlay making ``base`` into ``mine`` (environment ``env``)."""
    folder = f"overlays/{env}"
    namespace = f"{kebab(app)}-{kebab(env)}"
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    files = {f"{folder}/namespace.yaml": HEADER + to_yaml(ns)}
    before = {key(o): o for o in base.objects}
    after = {key(o): o for o in mine.objects}
    patches: list[dict[str, Any]] = []
    for name, obj in after.items():
        if name not in before:
            files[f"{folder}/{file_name(obj)}"] = HEADER + to_yaml(obj)
            continue
        ops = json_patch(before[name], obj)
        if ops:
            patches.append({"target": {"kind": name[0], "name": name[1]}, "patch": to_yaml(ops)})
    for name, obj in before.items():
        if name not in after:  # e.g. a Deployment that is a DaemonSet here
            gone = {"$patch": "delete", "apiVersion": obj["apiVersion"], "kind": name[0],
                    "metadata": {"name": name[1]}}  # fmt: skip
            patches.append({"target": {"kind": name[0], "name": name[1]}, "patch": to_yaml(gone)})
    kustomization: dict[str, Any] = {
        **KUSTOMIZATION,
        "namespace": namespace,
        "resources": ["../../base", *sorted(p.removeprefix(f"{folder}/") for p in files)],
    }
    if mine.config != base.config:
        kustomization["configMapGenerator"] = [
            {"name": mine.config_name, "behavior": "replace", "literals": _literals(mine.config)}
        ]
    added = [c for name, c in mine.certificates.items() if name not in base.certificates]
    if added:  # read from the overlay's own folder (Kustomize loads no files above it)
        kustomization["secretGenerator"] = _secret_generators(added)
    if patches:
        kustomization["patches"] = patches
    files[f"{folder}/kustomization.yaml"] = HEADER + to_yaml(kustomization)
    return files


def layout(app_dir: str | Path, environments: list[str]) -> Layout:
    """The base (the default configuration) and an overlay for each of ``environments``."""
    default = load_config(app_dir)
    base = render(default)
    files = base_files(base)
    warnings: dict[str, list[str]] = {}
    certificates: dict[str, tuple[str | None, list[CertificateRequest]]] = {}
    if base.certificates:
        certificates["base"] = (None, list(base.certificates.values()))
    for env, found in [
        ("base", base.warnings),
        *((e, _overlay(app_dir, e, base, files, certificates)) for e in environments),
    ]:
        for warning in found:
            warnings.setdefault(_generic(warning, env), []).append(env)
    return Layout(dict(sorted(files.items())), warnings, certificates)


def _overlay(
    app_dir: str | Path,
    env: str,
    base: Rendered,
    files: dict[str, str],
    certificates: dict[str, tuple[str | None, list[CertificateRequest]]],
) -> list[str]:
    config: AppConfig = load_config(app_dir, env)
    mine = render(config)
    files.update(overlay_files(config.name, env, base, mine))
    added = [c for name, c in mine.certificates.items() if name not in base.certificates]
    if added:
        certificates[f"overlays/{env}"] = (env, added)
    return mine.warnings


def write_certificates(app_dir: str | Path, layout: Layout, out: Path) -> list[str]:
    """Issue the certificates ``layout``'s secretGenerators read, under each folder's
    ``tls/``, from the CA of the folder's configuration (``security.ca_dir``, else the app's
    ``.lumi/ca/``, created if missing); the Secret names (re)issued. One still held from the
    same CA with over a third of its lifetime left is kept."""
    from lumi.security.issuer import Issuer

    issued = []
    for folder, (env, wanted) in sorted(layout.certificates.items()):
        ca = Issuer(load_config(app_dir, env)).ca
        root = out / folder / TLS_FOLDER
        root.mkdir(parents=True, exist_ok=True)
        (root / ".gitignore").write_text(
            "# private keys: issued by lumi deploy, never committed\n*\n"
        )
        for want in wanted:
            target = root / want.secret
            if _current(target, ca, want):
                continue
            cert = ca.issue(want.uri, lifetime=want.lifetime, dns=want.dns, server=True)
            write_bundle(target, {CERT_FILE: cert.cert, KEY_FILE: cert.key, CA_FILE: ca.cert_pem})
            issued.append(want.secret)
    return issued


def _current(folder: Path, ca: CertificateAuthority, want: CertificateRequest) -> bool:
    import datetime

    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate((folder / CERT_FILE).read_bytes())
        held_ca = (folder / CA_FILE).read_bytes()
    except (OSError, ValueError):
        return False
    if held_ca != ca.cert_pem:
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if names.get_values_for_type(x509.UniformResourceIdentifier) != [want.uri] or sorted(
        names.get_values_for_type(x509.DNSName)
    ) != sorted(want.dns):
        return False
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left.total_seconds() > want.lifetime / 3


def _generic(warning: str, env: str) -> str:
    """The same warning for every environment reads the same."""
    return warning.replace(f"env.{env}.defaults", "defaults")


def write(files: dict[str, str], out: Path) -> list[str]:
    """Write ``files`` under ``out`` (replacing ``base/`` and the overlays rendered); the
    paths that changed."""
    changed = [p for p, text in files.items() if _read(out / p) != text]
    _clear(out / "base")
    for overlay in {Path(p).parts[1] for p in files if p.startswith("overlays/")}:
        _clear(out / "overlays" / overlay)
    for path, text in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return changed


def _clear(folder: Path) -> None:
    """Remove what a folder held, except its issued certificates (``tls/``)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name == TLS_FOLDER and entry.is_dir():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def stale(files: dict[str, str], out: Path) -> list[str]:
    """Paths under ``out`` that differ from ``files`` (missing, changed, or left over)."""
    differ = [p for p, text in files.items() if _read(out / p) != text]
    folders = {Path(p).parent for p in files}
    extra = [
        str(f.relative_to(out))
        for folder in folders
        if (out / folder).is_dir()
        for f in (out / folder).iterdir()
        if f.is_file() and str(f.relative_to(out)) not in files
    ]
    return sorted(differ + extra)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def cluster_context() -> str | None:
    """kubectl's current context, or None when no cluster is configured."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "config", "current-context"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def apply(out: Path, env: str) -> str:
    """``kubectl apply -k`` the overlay of ``env``; its output. AppError when kubectl or a
    cluster is missing."""
    if shutil.which("kubectl") is None:
        raise AppError("--apply needs kubectl, which is not installed (the manifests are written)")
    context = cluster_context()
    if context is None:
        raise AppError(
            f"no Kubernetes cluster is configured (kubectl has no current context), so nothing "
            f"was applied; the manifests are in {out}: kubectl apply -k {out / 'overlays' / env}"
        )
    done = subprocess.run(
        ["kubectl", "apply", "-k", str(out / "overlays" / env)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AppError(f"kubectl apply -k failed on {context}: {done.stderr.strip()}")
    return done.stdout


def objects_of(text: str) -> list[Object]:
    """The objects of a multi-document YAML stream (``kubectl kustomize`` output)."""
    return [json.loads(json.dumps(doc)) for doc in yaml.safe_load_all(text) if doc]
