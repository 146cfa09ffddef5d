"""The engine against Apache Kafka on a SASL_SSL listener (README, Operations: Secured links).

The test makes a CA and a broker certificate with `openssl`; the broker (harness/apache_kafka.py
with `secured=`) has a SCRAM-SHA-512 user written at storage format time. The worker, `seed`
and `replay --via-kafka` connect with the documented variables only (`KAFKA_BOOTSTRAP_SERVERS`,
`REBATE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`, `REBATE_KAFKA_SASL_*`, `REBATE_KAFKA_SSL_CAFILE`).
A wrong password or an untrusted CA ends the command within seconds, with one `error:` line
naming the cause and never the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from agents.settings import Settings
from engine.seed import load_seed
from harness.apache_kafka import ApacheKafka, SaslSslListener
from harness.workers import settings_env
from tests.integration._certs import OPENSSL, SERVER_EXT, make_ca, make_leaf
from tests.integration._helpers import wait_ready
from tests.integration.fixtures import ROOT, deploy, offline_replay

USER = "rebate-worker"
PASSWORD = f"scram-{uuid.uuid4().hex}"  # distinctive: searched for in every output
SAMPLE_SEED = ROOT / "sample" / "seed.yaml"
SAMPLE_FILLS = ROOT / "sample" / "fills" / "mt4-real-3.fills.jsonl"
# Failing fast: one connection attempt per bootstrap server plus our diagnosis, each refused
# within a TLS or SCRAM round trip on loopback; a Python start-up (~3 s on a busy 2-core box)
# dominates. A retry loop would run into aiokafka's 40 s request timeout instead.
_FAIL_FAST_S = 20.0

pytestmark = [
    pytest.mark.skipif(OPENSSL is None, reason="needs openssl on PATH"),
    pytest.mark.brokers("kafka"),
]


@dataclass(frozen=True)
class Secured:
    kafka: ApacheKafka
    ca: Path
    other_ca: Path  # a CA that signed nothing of ours

    def fields(self, **update: object) -> dict[str, object]:
        """The settings a SASL_SSL deployment sets, as Settings fields for `model_copy` (which
        does not validate: the password goes in as a SecretStr already)."""
        fields: dict[str, object] = {
            "kafka_bootstrap_servers": self.kafka.secured_bootstrap_servers,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD),
            "kafka_ssl_cafile": self.ca,
        }
        return {**fields, **update}


@pytest.fixture(scope="module")
def secured(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A node of its own: the session's Kafka has no secured listener."""
    d = tmp_path_factory.mktemp("kafka-certs")
    ca = make_ca(d, "rebate-test-ca")
    cert, key = make_leaf(d, "kafka", ca, SERVER_EXT)
    other_ca, _ = make_ca(d, "somebody-else-ca")
    keystore = d / "kafka-keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text())
    keystore.chmod(0o600)
    listener = SaslSslListener(keystore, {USER: PASSWORD})
    with ApacheKafka(secured=listener, heap_mb=256) as kafka:
        yield Secured(kafka, ca[0], other_ca)


def _cli(settings: Settings, *args: str | Path, timeout_s: float = 120) -> tuple[int, str, float]:
    """`rebate-engine ARGS` with `settings` as its environment: exit code, output, seconds."""
    env = {**os.environ, **settings_env(settings)}
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - began


@pytest.mark.timeout(300)
def test_seed_worker_and_replay_over_sasl_ssl(
    secured: Secured, settings: Settings, tmp_path: Path
) -> None:
    lines = [line for line in SAMPLE_FILLS.read_bytes().splitlines() if line.strip()]
    expected, _ = offline_replay(load_seed(SAMPLE_SEED), lines)
    out = tmp_path / "credits.jsonl"
    # deploy() creates the deployment's topics through the secured listener too.
    with deploy(settings, "sasl-ssl", tmp_path, **secured.fields()) as dep:
        assert PASSWORD not in repr(dep.settings)
        seeded = _cli(dep.settings, "seed", SAMPLE_SEED, "--replace")
        worker = dep.start_worker(wait=False)
        wait_ready(worker)
        replayed = _cli(
            dep.settings, "replay", "--via-kafka", "--no-seed", "--workers", "0", "--quiet",
            "--seed", SAMPLE_SEED, "--fills", SAMPLE_FILLS, "--out", out,
        )  # fmt: skip
        log = worker.log_path.read_text(errors="replace")
    assert seeded[0] == 0, seeded[1]
    assert replayed[0] == 0, replayed[1]
    # 124 real MT4 fills, every one valid (sample/README.md): the offline replay's credits.
    assert sorted(out.read_bytes().splitlines()) == sorted(expected)
    assert log.strip(), "the worker logged nothing"
    for text in (seeded[1], replayed[1], log):
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("case", "update", "cause"),
    [
        (
            "wrong password",
            {"kafka_sasl_password": SecretStr("not-the-password")},
            "SaslAuthenticationFailed",
        ),
        ("untrusted CA", {"kafka_ssl_cafile": "other_ca"}, "CERTIFICATE_VERIFY_FAILED"),
        ("system CAs", {"kafka_ssl_cafile": None}, "CERTIFICATE_VERIFY_FAILED"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "replay", "topics"])
@pytest.mark.timeout(120)
def test_bad_password_or_trust_fails_fast_with_one_line(
    secured: Secured,
    settings: Settings,
    tmp_path: Path,
    case: str,
    update: dict[str, object],
    cause: str,
    command: str,
) -> None:
    if update.get("kafka_ssl_cafile") == "other_ca":
        update = {"kafka_ssl_cafile": secured.other_ca}
    bad = settings.model_copy(update=secured.fields(**update))
    args: dict[str, list[str | Path]] = {
        "worker": ["worker"],
        "replay": ["replay", "--via-kafka", "--workers", "0", "--seed", SAMPLE_SEED,
                   "--fills", SAMPLE_FILLS, "--out", tmp_path / "out.jsonl"],
        "topics": ["topics"],
    }  # fmt: skip
    code, output, seconds = _cli(bad, *args[command], timeout_s=_FAIL_FAST_S * 3)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1, (case, output)
    assert seconds < _FAIL_FAST_S, (case, seconds)
    assert len(errors) == 1, (case, output)
    assert secured.kafka.secured_bootstrap_servers in errors[0] and cause in errors[0], errors
    assert "Traceback" not in output
    # No retry storm: aiokafka tried the one bootstrap server once (its own log line).
    assert output.count("Unable connect to") <= 1, output
    assert PASSWORD not in output and "not-the-password" not in output
