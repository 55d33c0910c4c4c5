"""Generate the Helm chart's templates from manifests/, the one source, so the chart and `kubectl apply -k
manifests/` install the same objects (tests/test_chart.py checks both that the templates are what this
writes and that both render the same objects).

    python charts/generate.py            # rewrites charts/hearth/templates/ and charts/hearth/crds/

Each manifest is copied with Go template braces escaped, then a few exact edits put the values in: the
release's namespace for hearth-system, the image, the sidecar image, replicas, resources, API keys on or
off, extra front-door arguments, and switches around the optional objects. An edit that no longer finds
its text stops the generation: a manifest changed in a way the chart must follow.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
CHART = ROOT / "charts" / "hearth"
IMAGE = "ghcr.io/hearth-project/hearth:0.1.0"
NAMESPACE = "hearth-system"

IMAGE_VALUE = "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
SIDECAR_VALUE = (
    "{{ .Values.sidecarImage | default (printf "
    '"%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion)) }}'
)
COMPONENTS = {"webhook-deployment.yaml": "webhook", "gateway.yaml": "gateway", "scaler.yaml": "scaler"}
OPTIONAL = {  # file -> the value that switches it on
    "node-agent.yaml": "nodeAgent.enabled",
    "network-policies.yaml": "networkPolicies.enabled",
    "disruption-budgets.yaml": "disruptionBudgets.enabled",
    "grafana-dashboard.yaml": "dashboard.enabled",
}
LEFT_OUT = {"namespace.yaml", "kustomization.yaml"}  # the release's namespace is Helm's (--create-namespace)
CRDS = {"crd-inferenceruntime.yaml", "crd-llmservice.yaml"}  # crds/: installed as they are, never templated


class Drifted(Exception):
    """A manifest no longer holds the text an edit expects."""


def _escape(text: str) -> str:
    """Braces that are the manifests' own (runtime templates, Grafana legends) printed as they are."""
    return re.sub(r"(\{\{|\}\})", lambda m: '{{ "' + m.group(1) + '" }}', text)


def _replace(text: str, old: str, new: str, name: str, count: int = 1) -> str:
    if text.count(old) != count:
        raise Drifted(f"{name}: expected {count} of {old!r}, found {text.count(old)}")
    return text.replace(old, new)


def _component(text: str, name: str, component: str) -> str:
    text = _replace(text, "  replicas: 2\n", f"  replicas: {{{{ .Values.{component}.replicas }}}}\n", name)
    resources = re.compile(r"(?m)^        resources:\n          requests: .*\n          limits: .*\n")
    if len(resources.findall(text)) != 1:
        raise Drifted(f"{name}: expected one container resources block")
    values = f"        resources:\n          {{{{- toYaml .Values.{component}.resources | nindent 10 }}}}\n"
    return resources.sub(lambda _: values, text)


def template(name: str, text: str) -> str:
    """One manifest as a chart template."""
    text = _escape(text)
    if name in ("webhook-deployment.yaml", "scaler.yaml"):  # the sidecar's image; the scaler's prewarm Jobs too
        sidecar = f"- name: HEARTH_SIDECAR_IMAGE\n          value: {SIDECAR_VALUE}"
        text = _replace(text, f"- {{name: HEARTH_SIDECAR_IMAGE, value: {IMAGE}}}", sidecar, name)
    if name == "node-cache-policy.yaml":  # the images it admits as hearth-fetch, and the cache it guards
        text = _replace(text, f"  images: {IMAGE}", f"  images: {SIDECAR_VALUE}", name)
        text = _replace(text, "'/var/lib/hearth/models'.split", "'{{ .Values.nodeAgent.hostPath }}'.split", name)
    if name == "network-policies.yaml":  # where Prometheus runs (its pods are admitted by label and namespace)
        old = "matchLabels: {kubernetes.io/metadata.name: monitoring}"
        new = "matchLabels: {kubernetes.io/metadata.name: {{ .Values.networkPolicies.prometheusNamespace }}}"
        text = _replace(text, old, new, name, count=3)
    if name == "node-agent.yaml":
        text = _replace(text, "/var/lib/hearth/models", "{{ .Values.nodeAgent.hostPath }}", name, count=2)
    text = text.replace(f"image: {IMAGE}", f"image: {IMAGE_VALUE}")
    text = text.replace(NAMESPACE, "{{ .Release.Namespace }}")
    if name in COMPONENTS:
        text = _component(text, name, COMPONENTS[name])
    if name == "gateway.yaml":
        text = _replace(
            text,
            "--token-file=/var/run/secrets/hearth/token]",
            "--token-file=/var/run/secrets/hearth/token"
            "{{ if not .Values.apiKeys.enabled }}, --trusted-network{{ end }}"
            "{{ range .Values.gateway.extraArgs }}, {{ . }}{{ end }}]",
            name,
        )
    if name in OPTIONAL:
        text = f"{{{{- if .Values.{OPTIONAL[name]} }}}}\n{text.rstrip()}\n{{{{- end }}}}\n"
    return text


def generate(out: Path = CHART) -> list[Path]:
    kustomization = (MANIFESTS / "kustomization.yaml").read_text()
    names = re.findall(r"(?m)^- (\S+\.yaml)$", kustomization)
    written = []
    for name in names:
        if name in LEFT_OUT:
            continue
        source = (MANIFESTS / name).read_text()
        folder, text = (out / "crds", source) if name in CRDS else (out / "templates", template(name, source))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    try:
        for path in generate():
            print(f"wrote {path.relative_to(ROOT)}")
    except Drifted as drift:
        print(f"error: {drift}", file=sys.stderr)
        sys.exit(1)
