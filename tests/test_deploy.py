"""deploy/: the Kubernetes manifests validate against the Kubernetes schema (shipped offline by
kubernetes-validate; nothing is fetched), keep to common cluster security defaults, and agree
with `kanban dispatch` (its options, its grace, its probes); the image installs kanban the
way the docs tell a user to, and runs as the user the manifests expect."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from kanban import clock
from kanban.cli import cli
from kanban.cli import dispatch as dispatch_cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
KUBERNETES = "1.30.0"  # the oldest version still supported upstream when this was written


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def _deployment(name: str) -> dict[str, Any]:
    return next(
        d for _, d in _docs() if d["kind"] == "Deployment" and d["metadata"]["name"] == name
    )


def _containerfile() -> list[tuple[str, str]]:
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Containerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


@pytest.mark.parametrize(("name", "doc"), _docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_manifest_validates_against_the_kubernetes_schema(name: str, doc: Any) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_the_validation_is_not_vacuous() -> None:
    broken = copy.deepcopy(_deployment("kanban-dispatcher"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["cmd"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)
    broken = copy.deepcopy(_deployment("kanban-dispatcher"))
    broken["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_pods_run_as_non_root_on_a_read_only_root_with_writable_volumes_only() -> None:
    for _, doc in _docs():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, container["name"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for mount in container["volumeMounts"]:
                volume = volumes[mount["name"]]
                # Writable: an emptyDir. Anything else (secrets) is mounted read-only.
                assert "emptyDir" in volume or mount.get("readOnly") is True, mount


def test_the_image_user_and_volumes_match_the_manifests() -> None:
    steps = _containerfile()
    user = next(arg for word, arg in steps if word == "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can check it
    volumes = set(yaml.safe_load(next(arg for word, arg in steps if word == "VOLUME")))
    for _, doc in _docs():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsGroup"] == int(gid)
        for container in pod.get("initContainers", []) + pod["containers"]:
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert writable <= volumes, (container["name"], writable - volumes)
    assert steps[0][0] == "FROM" and steps[0][1].endswith("-slim")
    assert any(word == "ARG" and arg.startswith("AGENT_NPM") for word, arg in steps)
    assert any(word == "ARG" and arg.startswith("AGENT_PIP") for word, arg in steps)


def test_the_dispatcher_command_parses_and_its_grace_fits_the_pods() -> None:
    pod = _deployment("kanban-dispatcher")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[:2] == ["kanban", "dispatch"]
    # The same options `kanban dispatch` takes (click refuses unknown ones).
    # (Under the real group's context: click caches a command's help option on first use.)
    group = click.Context(cli, info_name="kanban", help_option_names=["-h", "--help"])
    ctx = dispatch_cli.dispatch.make_context("dispatch", list(args[2:]), parent=group)
    assert ctx.params["handoff"] is True
    grace = clock.parse_duration(ctx.params["grace"])
    assert 0 < grace < pod["terminationGracePeriodSeconds"]
    # The image's default command is the same one.
    cmd = next(arg for word, arg in _containerfile() if word == "CMD")
    assert yaml.safe_load(cmd) == args
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KANBAN_DB"]["valueFrom"]["secretKeyRef"]["name"] == "kanban-board"
    assert "kanban-git" in {v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    assert container["readinessProbe"]["exec"]["command"] == ["kanban", "health", "--ready"]
    assert container["livenessProbe"]["exec"]["command"] == ["kanban", "health", "--live"]
    # The init container leaves the clone where the dispatcher works.
    [clone] = pod["initContainers"]
    assert (
        clone["command"][:2] == ["git", "clone"] and clone["command"][-1] == container["workingDir"]
    )


def test_the_image_installs_kanban_the_way_the_docs_tell_a_user() -> None:
    runs = [arg for word, arg in _containerfile() if word == "RUN"]
    install = next(r for r in runs if "pip install" in r and "kanban" in r)
    words = shlex.split(install)
    venv = words[words.index("venv") + 1]
    assert words[:3] == ["python3", "-m", "venv"]
    pip = words.index(f"{venv}/bin/pip")
    target = next(w for w in words[pip + 2 :] if not w.startswith("-"))
    source = next(arg for word, arg in _containerfile() if word == "COPY").split()
    assert source[0] == "." and target == f"{source[1]}[postgres]"  # a clone, the postgres extra
    # What the docs say, for a user on a host: a clone, a venv, '.[postgres]'.
    guide = (ROOT / "docs" / "howto" / "kubernetes.md").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install '.[postgres]'" in guide
    assert "python3 -m venv .venv" in (ROOT / "README.md").read_text()
    assert "pip install '.[postgres]'" in (ROOT / "docs" / "howto" / "several-hosts.md").read_text()


def test_the_web_board_command_parses_and_carries_its_token() -> None:
    from kanban.cli import serve as serve_cli

    [container] = _deployment("kanban-web")["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["kanban", "serve"]
    group = click.Context(cli, info_name="kanban", help_option_names=["-h", "--help"])
    ctx = serve_cli.serve.make_context("serve", list(container["args"][2:]), parent=group)
    assert ctx.params["host"] == "0.0.0.0"
    assert ctx.params["port"] == container["ports"][0]["containerPort"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KANBAN_WEB_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "kanban-web"
