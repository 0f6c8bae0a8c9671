"""deploy/: the image, the compose stack and the Kubernetes manifests agree with the code.

No container engine runs here, so these read the files: YAML that parses, pinned images, only real
settings (and every required one), probes at real routes, LiveKit's webhook wired to roomkeeper's
`/webhook` with the same keys, a Dockerfile that installs the hashed lock as a non-root user.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, get_args
from urllib.parse import urlsplit

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import AliasChoices, SecretStr

from handlers.app import create_app
from roomkeeper.cli import build_parser, run_worker
from worker.metrics import QUEUE_DEPTH
from worker.settings import Settings, load_settings
from worker.webhooks.signing import webhook_headers

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
LOCK = ROOT / "requirements.lock"
WORKER_CHECK = ["roomkeeper", "worker", "--check"]
PYTHON_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}  # the image's non-settings


# --- what the code says -------------------------------------------------------------------------


def _env_name(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"ROOMKEEPER_{name.upper()}"


def _mentions_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_mentions_secret(a) for a in get_args(annotation))


SETTINGS_ENV = {_env_name(n) for n in Settings.model_fields}
REQUIRED_ENV = {_env_name(n) for n, f in Settings.model_fields.items() if f.is_required()}
SECRET_ENV = {
    _env_name(n) for n, f in Settings.model_fields.items() if _mentions_secret(f.annotation)
}


def _default(env: str) -> Any:
    name = next(n for n in Settings.model_fields if _env_name(n) == env)
    return Settings.model_fields[name].default


def _dummy_settings() -> Settings:
    return Settings(
        livekit_api_key="key",
        livekit_api_secret="livekit-secret-that-is-long-enough-for-hs256",
        api_key="plugnmeet",
        api_secret="api-secret-that-is-long-enough-for-hs256",
        webhook_secret="whsec_" + base64.b64encode(b"k" * 32).decode(),
        _env_file=None,
    )


def _routes() -> dict[str, set[str]]:
    """path -> methods, from the real app (building it opens no connection)."""
    routes: dict[str, set[str]] = {}
    for route in create_app(_dummy_settings()).router.routes():
        if route.resource is not None:
            routes.setdefault(route.resource.canonical, set()).add(route.method)
    return routes


ROUTES = _routes()


def _loads_as_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a process started with exactly this environment would get."""
    for name in list(os.environ):
        if name.upper().startswith(("ROOMKEEPER_", "LIVEKIT_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


# --- reading deploy/ ----------------------------------------------------------------------------


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _livekit_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "livekit.yaml").read_text())
    return data


def _kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return data


def _base_objects() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/kubernetes` creates (before optional components)."""
    return [doc for res in _kustomization(K8S)["resources"] for doc in _yaml_docs(K8S / res)]


def _components() -> list[Path]:
    return sorted(p for p in (K8S / "components").iterdir() if p.is_dir())


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _container_env(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """What a container's process sees: envFrom ConfigMaps and Secrets, then its own env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= _find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            secret = _find(objects, "Secret", source["secretRef"]["name"])
            env |= secret.get("stringData", {})
            env |= {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "")
    return env


def _deployment(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    matches = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == component
    ]
    assert len(matches) == 1, f"expected one {component} Deployment"
    return matches[0]


@dataclass
class Stage:
    """One FROM stage of a Dockerfile."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for rest in self.args("ENV"):
            for word in shlex.split(rest):
                name, _, value = word.partition("=")
                env[name] = value
        return env


def _dockerfile() -> list[Stage]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    build_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, value = rest.partition("=")
            build_args[name] = value
        elif keyword == "FROM":
            image = rest.split()[0]
            for name, value in build_args.items():
                image = image.replace(f"${{{name}}}", value)
            stages.append(Stage(image))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


def _lock_pins() -> dict[str, str]:
    return {
        canonicalize_name(m[1]): m[2]
        for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", LOCK.read_text(), re.M)
    }


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _roomkeeper_services() -> dict[str, dict[str, Any]]:
    """Compose services running the image built from this repository."""
    return {name: s for name, s in _compose()["services"].items() if "build" in s}


def _compose_service(command: str) -> dict[str, Any]:
    matches = [s for s in _roomkeeper_services().values() if s.get("command") == [command]]
    assert len(matches) == 1, f"expected one compose service running `roomkeeper {command}`"
    return matches[0]


def _compose_listen_port(service: dict[str, Any]) -> int:
    """Where `roomkeeper api` listens in that container: its env, else the image, else default."""
    image_env = _dockerfile()[-1].env()
    port = service.get("environment", {}).get("ROOMKEEPER_PORT") or image_env.get(
        "ROOMKEEPER_PORT", _default("ROOMKEEPER_PORT")
    )
    return int(port)


def _all_images() -> Iterator[tuple[str, str]]:
    for name, service in _compose()["services"].items():
        yield f"compose service {name}", service.get("image", "")
    objects = _base_objects() + [
        doc for c in _components() for res in _kustomization(c).get("resources", [])
        for doc in _yaml_docs(c / res)
    ]  # fmt: skip
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            for container in _containers(obj):
                yield f"{obj['kind']} {obj['metadata']['name']}", container.get("image", "")
    for stage in _dockerfile():
        yield "Dockerfile FROM", stage.base


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    name, sep, tag = last.partition(":")
    return bool(name and sep and tag and tag != "latest")


# --- YAML and images ----------------------------------------------------------------------------


def test_every_yaml_file_in_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert COMPOSE in files and K8S / "kustomization.yaml" in files
    for path in files:
        assert _yaml_docs(path), f"{path} holds no YAML document"


def test_every_image_is_named_and_pinned_to_a_tag_other_than_latest() -> None:
    images = list(_all_images())
    assert len(images) >= 8
    for where, image in images:
        assert image, f"{where} names no image"
        assert _pinned(image), f"{where}: image {image!r} is not pinned to a tag"
    for entry in _kustomization(K8S).get("images", []):
        assert entry.get("newTag") not in (None, "", "latest")


# --- settings -----------------------------------------------------------------------------------


def test_compose_gives_api_and_workers_only_real_settings_and_every_required_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, service in _roomkeeper_services().items():
        unknown = set(service.get("environment", {})) - SETTINGS_ENV
        assert not unknown, f"compose service {name} sets variables roomkeeper ignores: {unknown}"
    for command in ("api", "worker"):
        env = {k: str(v) for k, v in _compose_service(command).get("environment", {}).items()}
        assert set(env) >= REQUIRED_ENV, f"{command} misses {REQUIRED_ENV - set(env)}"
        _loads_as_settings(env, monkeypatch)
    image_env = set(_dockerfile()[-1].env()) - PYTHON_ENV
    assert image_env <= SETTINGS_ENV, f"the image sets unknown {image_env - SETTINGS_ENV}"


def test_kubernetes_gives_api_and_workers_only_real_settings_and_every_required_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = _base_objects()
    for component in ("api", "worker"):
        (container,) = _deployment(objects, component)["spec"]["template"]["spec"]["containers"]
        env = _container_env(container, objects)
        assert set(env) <= SETTINGS_ENV, f"{component}: unknown {set(env) - SETTINGS_ENV}"
        assert set(env) >= REQUIRED_ENV, f"{component} misses {REQUIRED_ENV - set(env)}"
        _loads_as_settings(env, monkeypatch)


def test_sentinel_component_sets_real_settings_that_load_as_a_sentinel_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = _base_objects()
    (patch,) = [
        doc
        for doc in _yaml_docs(K8S / "components" / "sentinel" / "configmap-patch.yaml")
        if doc["kind"] == "ConfigMap"
    ]
    assert set(patch["data"]) <= SETTINGS_ENV
    (container,) = _deployment(objects, "worker")["spec"]["template"]["spec"]["containers"]
    settings = _loads_as_settings(_container_env(container, objects) | patch["data"], monkeypatch)
    assert len(settings.redis_sentinels) >= 3
    assert all(re.fullmatch(r"[\w.-]+:\d+", s) for s in settings.redis_sentinels)
    assert settings.redis_sentinel_master


def test_secrets_are_in_the_secret_and_never_in_a_configmap() -> None:
    assert {"LIVEKIT_API_SECRET", "ROOMKEEPER_API_SECRET", "ROOMKEEPER_WEBHOOK_SECRET"} <= (
        SECRET_ENV
    )
    configmaps = [o for o in _base_objects() if o["kind"] == "ConfigMap"]
    for component in _components():
        for path in component.glob("*.yaml"):
            configmaps += [d for d in _yaml_docs(path) if d.get("kind") == "ConfigMap"]
    for configmap in configmaps:
        leaked = set(configmap.get("data", {})) & SECRET_ENV
        assert not leaked, f"ConfigMap {configmap['metadata']['name']} holds secrets: {leaked}"
    (secret,) = [o for o in _base_objects() if o["kind"] == "Secret"]
    assert set(secret["stringData"]) >= SECRET_ENV


# --- probes -------------------------------------------------------------------------------------


def test_api_probes_point_at_real_routes_on_the_port_the_api_listens_on() -> None:
    objects = _base_objects()
    (container,) = _deployment(objects, "api")["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    listen = int(env.get("ROOMKEEPER_PORT", _default("ROOMKEEPER_PORT")))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]["httpGet"]
        assert "GET" in ROUTES.get(probe["path"], set()), f"{kind} {probe['path']} is no route"
        assert ports.get(probe["port"], probe["port"]) == listen

    service = _compose_service("api")
    test = " ".join(service["healthcheck"]["test"])
    (url,) = re.findall(r"http://[^'\" ]+", test)
    assert "GET" in ROUTES.get(urlsplit(url).path, set())
    assert urlsplit(url).port == _compose_listen_port(service)


def test_worker_probes_run_the_worker_health_check() -> None:
    (container,) = _deployment(_base_objects(), "worker")["spec"]["template"]["spec"]["containers"]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["exec"]["command"] == WORKER_CHECK, kind
    compose_test = _compose_service("worker")["healthcheck"]["test"]
    assert compose_test[0] == "CMD" and compose_test[1:] == WORKER_CHECK
    args = build_parser().parse_args(WORKER_CHECK[1:])
    assert args.func is run_worker and args.check is True
    assert "roomkeeper" in _pyproject()["project"]["scripts"]


def _shutdown_seconds(env: dict[str, str]) -> float:
    """How long a process may take to stop after SIGTERM: its drain (if any) plus its grace."""
    total = 0.0
    for name in ("ROOMKEEPER_SHUTDOWN_DRAIN", "ROOMKEEPER_SHUTDOWN_GRACE"):
        if name in SETTINGS_ENV:
            total += float(env.get(name, _default(name)))
    return total


def test_termination_grace_outlasts_roomkeepers_shutdown_grace() -> None:
    objects = _base_objects()
    for component in ("api", "worker"):
        deployment = _deployment(objects, component)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        stop = _shutdown_seconds(_container_env(container, objects))
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {})
        sleep = float(pre_stop["command"][1]) if pre_stop.get("command", [""])[0] == "sleep" else 0
        period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period > sleep + stop, f"{component}: {period} s <= {sleep} + {stop} s"
    for command in ("api", "worker"):
        service = _compose_service(command)
        stop = _shutdown_seconds({k: str(v) for k, v in service["environment"].items()})
        assert int(service["stop_grace_period"].removesuffix("s")) > stop


# --- LiveKit in compose -------------------------------------------------------------------------


def _serves_roomkeeper_api(
    service_name: str, port: int, seen: frozenset[str] = frozenset()
) -> bool:
    """The compose service answers roomkeeper's API on that port, itself or through nginx."""
    assert service_name not in seen, "load balancer loop"
    services = _compose()["services"]
    assert service_name in services, f"no compose service {service_name!r}"
    service = services[service_name]
    if "build" in service:
        return service.get("command") == ["api"] and _compose_listen_port(service) == port
    if service.get("image", "").startswith("nginx:"):
        (conf,) = [DEPLOY / v.split(":")[0] for v in service.get("volumes", []) if "nginx" in v]
        text = conf.read_text()
        listens = {int(p) for p in re.findall(r"^\s*listen\s+(\d+)", text, re.M)}
        upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", text, re.M)
        return (
            port in listens
            and bool(upstreams)
            and all(
                _serves_roomkeeper_api(host, int(p), seen | {service_name}) for host, p in upstreams
            )
        )
    return False


def test_livekit_sends_its_webhooks_to_roomkeepers_webhook_route_in_compose() -> None:
    config = _livekit_config()
    urls = config["webhook"]["urls"]
    assert urls
    assert "POST" in ROUTES["/webhook"]
    for url in urls:
        parts = urlsplit(url)
        assert parts.path == "/webhook"
        assert _serves_roomkeeper_api(str(parts.hostname), parts.port or 80), url
        # LiveKit must reach that service: they share a network.
        services = _compose()["services"]
        shared = set(services["livekit"]["networks"]) & set(services[parts.hostname]["networks"])
        assert shared, f"livekit and {parts.hostname} share no network"


def test_livekit_keys_match_what_roomkeeper_uses_and_sign_the_webhooks() -> None:
    config = _livekit_config()
    keys = config["keys"]
    assert config["webhook"]["api_key"] in keys
    for command in ("api", "worker"):
        env = _compose_service(command)["environment"]
        key, secret = env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"]
        assert keys.get(key) == secret, f"{command}'s LiveKit pair is not in livekit.yaml"
        assert len(secret) >= 32
        # roomkeeper verifies LiveKit's webhooks with its one pair: LiveKit must sign with it.
        assert config["webhook"]["api_key"] == key
        lk = urlsplit(env["LIVEKIT_URL"])
        assert lk.hostname == "livekit" and lk.port == config["port"]


def test_compose_opens_the_ssrf_guard_only_for_the_demo_receivers_network() -> None:
    compose = _compose()
    (subnet,) = [c["subnet"] for c in compose["networks"]["webhooks"]["ipam"]["config"]]
    services = compose["services"]
    assert services["receiver"]["networks"] == ["webhooks"]
    assert "webhooks" in services["worker"]["networks"]
    assert _compose_service("worker")["environment"]["ROOMKEEPER_WEBHOOK_ALLOWED_CIDRS"] == subnet


def test_redis_keeps_an_append_only_file_fsynced_every_second_and_never_evicts() -> None:
    wanted = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
    ]
    compose_cmd = _compose()["services"]["redis"]["command"]
    (redis,) = _containers(_find(_base_objects(), "StatefulSet", "redis"))
    for args in (compose_cmd, redis["args"]):
        pairs = dict(zip(args[::2], args[1::2], strict=False)) | dict(
            zip(args[1::2], args[2::2], strict=False)
        )
        for flag, value in zip(wanted[::2], wanted[1::2], strict=True):
            assert pairs.get(flag) == value, f"{flag} {value} missing from {args}"
    assert any(v.endswith(":/data") for v in _compose()["services"]["redis"]["volumes"])


# --- Kubernetes consistency ---------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_components_patch_objects_that_exist() -> None:
    base = _kustomization(K8S)
    listed = set(base["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, f"unlisted {on_disk - listed}, missing {listed - on_disk}"
    objects = _base_objects()
    assert _components(), "no optional components"
    for component in _components():
        kustomization = _kustomization(component)
        assert kustomization["kind"] == "Component"
        for res in kustomization.get("resources", []):
            assert (component / res).is_file()
        for patch in kustomization.get("patches", []):
            if "path" in patch:
                for doc in _yaml_docs(component / patch["path"]):
                    _find(objects, doc["kind"], doc["metadata"]["name"])
            else:
                target = patch["target"]
                _find(objects, target["kind"], target["name"])
                assert yaml.safe_load(patch["patch"])


def test_autoscalers_budgets_and_service_select_the_deployments() -> None:
    objects = _base_objects()
    api, worker = _deployment(objects, "api"), _deployment(objects, "worker")
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in api["spec"], "the HPA owns the API's replica count"
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    selected = [b["spec"]["selector"]["matchLabels"] for b in budgets]
    assert any(s.items() <= api_labels.items() for s in selected)
    assert any(s.items() <= worker_labels.items() for s in selected)
    service = _find(objects, "Service", "roomkeeper-api")
    assert service["spec"]["selector"].items() <= api_labels.items()
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    for workload in (api, worker):
        for container in _containers(workload):
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_workers_scale_on_the_create_queue_depth_metric_roomkeeper_exports() -> None:
    (scaled,) = [
        d
        for d in _yaml_docs(K8S / "components" / "keda-workers" / "scaledobject.yaml")
        if d["kind"] == "ScaledObject"
    ]
    worker = _deployment(_base_objects(), "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (prometheus,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert QUEUE_DEPTH._name in prometheus["metadata"]["query"]
    assert float(prometheus["metadata"]["threshold"]) > 0
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_pods_run_unprivileged_on_a_read_only_root_with_tmp_writable() -> None:
    objects = _base_objects()
    for component in ("api", "worker"):
        spec = _deployment(objects, component)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        (container,) = spec["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        health_file = _container_env(container, objects).get(
            "ROOMKEEPER_WORKER_HEALTH_FILE", _default("ROOMKEEPER_WORKER_HEALTH_FILE")
        )
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(health_file.startswith(m.rstrip("/") + "/") for m in mounts)


# --- the image and the lock ---------------------------------------------------------------------


def test_dockerfile_installs_the_hashed_lock_runs_as_non_root_and_enters_through_roomkeeper() -> (
    None
):
    stages = _dockerfile()
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    assert all(s.base.startswith("python:3.11") and "slim" in s.base for s in stages)
    runs = [run for stage in stages for run in stage.args("RUN")]
    copies = [c for stage in stages for c in stage.args("COPY")]
    assert any(c.split()[0] == "requirements.lock" for c in copies)
    locked = [r for r in runs if "-r requirements.lock" in r]
    assert locked and all("--require-hashes" in r for r in locked)
    assert any("--no-deps ." in r for r in runs), "the project goes on top without dependencies"
    final = stages[-1]
    (user,) = final.args("USER")
    assert user.split(":")[0] not in {"root", "0"}
    (entrypoint,) = final.args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["roomkeeper"]
    assert final.env().get("ROOMKEEPER_HOST") == "0.0.0.0"  # noqa: S104 - in a container


def test_dockerignore_keeps_everything_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        word
        for stage in _dockerfile()
        for copy in stage.args("COPY")
        if not copy.startswith("--from")
        for word in copy.split()[:-1]
    ]
    assert "requirements.lock" in sources and "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        excluded = [p for p in patterns if fnmatch.fnmatch(source, p.removeprefix("**/"))]
        assert not excluded, f"COPY {source} is excluded by .dockerignore {excluded}"
    pyproject = _pyproject()
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert package in sources, f"package {package} is not copied into the image"
    assert pyproject["project"]["readme"] in sources


def test_lock_pins_every_runtime_dependency_within_pyprojects_ranges_with_hashes() -> None:
    pins = _lock_pins()
    for spec in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {spec}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    for entry in entries:
        if re.match(r"[A-Za-z0-9._-]+==", entry):
            assert "--hash=sha256:" in entry, entry.splitlines()[0]
    header = LOCK.read_text().splitlines()[:3]
    (command,) = [line for line in header if "pip compile" in line]
    assert "--generate-hashes" in command and "--python-version 3.11" in command


# --- the demo receiver --------------------------------------------------------------------------


def _receiver_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_receiver", DEPLOY / "receiver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_demo_receiver_verifies_both_signatures_roomkeeper_sends() -> None:
    key, secret = "plugnmeet", "api-secret-that-is-long-enough-for-hs256"
    raw_key = b"receiver-test-webhook-key-32byte"
    whsec = "whsec_" + base64.b64encode(raw_key).decode()
    lines: list[str] = []
    app = _receiver_module().make_app(key, secret, whsec, lines.append)
    event_id = str(uuid.uuid4())
    body = json.dumps({"event": "room_created", "room": {"room_id": "r1"}, "id": event_id}).encode()
    headers = webhook_headers(
        body=body,
        msg_id=event_id,
        now=int(time.time()),
        api_key=key,
        api_secret=secret,
        keys=[raw_key],
        user_agent="roomkeeper/test",
    )
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        for data in (body, body.replace(b"r1", b"r2")):
            async with session.post(server.make_url("/hook"), data=data, headers=headers) as resp:
                assert resp.status == 200
    good, tampered = lines
    assert "room_created room=r1" in good
    assert "jwt ok" in good and "standard-webhooks ok" in good
    assert "jwt FAILED" in tampered and "standard-webhooks FAILED" in tampered
