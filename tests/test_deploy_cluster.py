"""The several-replica deployments (deploy/compose, deploy/kubernetes), checked without Docker
or a cluster: they parse, what they reference exists, the probes and replicas are what the
README promises, and the config each one carries passes `intmon validate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_DIR = ROOT / "deploy" / "compose"
MANIFEST = ROOT / "deploy" / "kubernetes" / "intmon.yaml"
INTMON = [sys.executable, "-m", "monitor"]
# What the deployments take from their secrets; a cost-4 hash keeps validation fast.
SECRETS = {
    "POSTGRES_PASSWORD": "pw",
    "INTMON_DB_PASSWORD": "pw",
    "INTMON_OPS_HASH": bcrypt.hashpw(b"ops", bcrypt.gensalt(4)).decode(),
    "INTMON_HEARTBEAT_SECRET": "0123456789abcdef0123",
}


def validate(config: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`intmon validate` on the file exactly as deployed, `monitor.replica` included."""
    path = tmp_path / "monitor.yaml"
    path.write_text(config)
    env = {**os.environ, **SECRETS}
    return subprocess.run(
        [*INTMON, "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


# -- compose ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    return spec


def replicas(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in spec["services"].items() if s.get("command", [None])[0] == "run"}


def test_compose_runs_two_replicas_after_a_healthy_postgres() -> None:
    spec = compose()
    postgres = spec["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in spec["volumes"]

    both = replicas(spec)
    assert len(both) == 2
    host_ports = set()
    for name, service in both.items():
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        assert "/healthz" in " ".join(service["healthcheck"]["test"]), name
        assert (COMPOSE_DIR / service["build"]["context"]).resolve() == ROOT, name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"
        host_ports |= {p.rsplit(":", 1)[0] for p in service["ports"]}
        config_path = service["command"][service["command"].index("--config") + 1]
        assert config_path == "/etc/intmon/monitor.yaml"
    assert len(host_ports) == 2, "each replica on a port of its own"


def test_the_compose_replicas_share_one_database_and_validate(tmp_path: Path) -> None:
    config_text = (COMPOSE_DIR / "config" / "monitor.yaml").read_text()
    monitor = yaml.safe_load(config_text)["monitor"]
    assert monitor["database"].startswith("postgresql://intmon:${POSTGRES_PASSWORD}@postgres/")
    assert monitor["replica"] == {"lease": "15s"}
    assert monitor["listen"] == "0.0.0.0:9464"
    # The password reaches the replicas from the same variable Postgres is created with.
    spec = compose()
    for service in replicas(spec).values():
        assert (
            service["environment"]["POSTGRES_PASSWORD"]
            == (spec["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"])
        )
    run = validate(config_text, tmp_path)
    assert run.returncode == 0, run.stderr


# -- kubernetes ------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def test_the_deployment_runs_two_probed_non_root_replicas() -> None:
    docs = manifests()
    assert set(docs) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    # The config comes from the ConfigMap; every ${VAR} it uses comes from the Secret.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert container["command"][-1] == f"{mounts['config']}/monitor.yaml"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    config = docs["ConfigMap"]["data"]["monitor.yaml"]
    for name in env:
        assert f"${{{name}}}" in config, name
    assert "INTMON_DB_PASSWORD" in env

    labels = deployment["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"] == labels
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == labels
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    port = container["ports"][0]["containerPort"]
    assert yaml.safe_load(config)["monitor"]["listen"] == f"0.0.0.0:{port}"


def test_the_configmap_config_passes_intmon_validate(tmp_path: Path) -> None:
    config = manifests()["ConfigMap"]["data"]["monitor.yaml"]
    assert yaml.safe_load(config)["monitor"]["replica"] == {"lease": "15s"}
    run = validate(config, tmp_path)
    assert run.returncode == 0, run.stderr
