"""How every Kafka client authenticates and encrypts: the security settings and the pass-through.

The derived client configs (:mod:`config.kafka`) carry these under librdkafka's property names,
which both transports understand: confluent-kafka takes them as they are and kafka-python renames
the few it spells differently (:data:`KAFKA_PYTHON_NAMES`). The Java client keeps SASL
credentials in a JAAS string and CAs in trust stores, which neither Python client reads, so its
names are not used for these.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr

from config.groups import SECRET_MASK, Slice

__all__ = [
    "KAFKA_PYTHON_NAMES",
    "PROPERTY_NAME",
    "SECRET_PROPERTY",
    "KafkaSecurity",
    "SaslMechanism",
    "SecurityProtocol",
    "security_problems",
    "shown_properties",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PropertyValue = str | int | float | bool

PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9]+)*\Z")  # e.g. compression.type (\Z: no final newline)
SECRET_PROPERTY = re.compile(
    r"password|secret|jaas|token|credential|oauthbearer\.config|(^|[._])key([._]|$)", re.IGNORECASE
)  # a private key (ssl.key.pem) is a secret too; masking a key file's path costs nothing

# librdkafka's names that kafka-python spells otherwise (the rest: dots become underscores).
KAFKA_PYTHON_NAMES = {
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.crl.location": "ssl_crlfile",
    "ssl.cipher.suites": "ssl_ciphers",
}


class KafkaSecurity(Slice):
    """Protocol, SASL credentials, TLS files and the extra client properties of every Kafka client."""

    protocol: SecurityProtocol = Field(validation_alias="kafka_security_protocol")
    sasl_mechanism: SaslMechanism | None = Field(validation_alias="kafka_sasl_mechanism")
    sasl_username: str | None = Field(validation_alias="kafka_sasl_username")
    sasl_password: SecretStr | None = Field(validation_alias="kafka_sasl_password")
    ssl_cafile: Path | None = Field(validation_alias="kafka_ssl_cafile")
    ssl_certfile: Path | None = Field(validation_alias="kafka_ssl_certfile")
    ssl_keyfile: Path | None = Field(validation_alias="kafka_ssl_keyfile")
    ssl_check_hostname: bool = Field(validation_alias="kafka_ssl_check_hostname")
    client_properties: dict[str, PropertyValue] = Field(validation_alias="kafka_client_properties")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def config(self) -> dict[str, Any]:
        """The security properties, librdkafka's names (only what the protocol uses)."""
        out: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.username"] = self.sasl_username
            out["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.tls:
            files = {
                "ssl.ca.location": self.ssl_cafile,
                "ssl.certificate.location": self.ssl_certfile,
                "ssl.key.location": self.ssl_keyfile,
            }
            out.update({name: str(path) for name, path in files.items() if path is not None})
            out["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
        return out


def security_problems(security: KafkaSecurity, reserved: frozenset[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``(message, fields involved)`` for every inconsistency of the security settings."""
    problems: list[tuple[str, tuple[str, ...]]] = []
    if security.sasl:
        missing = [
            name
            for name, value in (
                ("kafka_sasl_mechanism", security.sasl_mechanism),
                ("kafka_sasl_username", security.sasl_username),
                ("kafka_sasl_password", security.sasl_password),
            )
            if not value
        ]
        if missing:
            problems.append(
                (f"kafka_security_protocol {security.protocol} needs {', '.join(missing)}", tuple(missing))
            )
    elif security.sasl_mechanism or security.sasl_username or security.sasl_password:
        problems.append(
            (
                f"SASL settings are given but kafka_security_protocol is {security.protocol} "
                "(use SASL_SSL or SASL_PLAINTEXT)",
                ("kafka_security_protocol",),
            )
        )
    files = {
        "kafka_ssl_cafile": security.ssl_cafile,
        "kafka_ssl_certfile": security.ssl_certfile,
        "kafka_ssl_keyfile": security.ssl_keyfile,
    }
    if not security.tls and any(files.values()):
        problems.append(
            (
                f"TLS files are given but kafka_security_protocol is {security.protocol} (use SSL or SASL_SSL)",
                ("kafka_security_protocol",),
            )
        )
    for name, path in files.items():
        if path is not None and not path.is_file():
            problems.append((f"{name} names {path}, which is not a readable file", (name,)))
    if bool(security.ssl_certfile) != bool(security.ssl_keyfile):
        problems.append(
            (
                "kafka_ssl_certfile and kafka_ssl_keyfile go together",
                ("kafka_ssl_certfile", "kafka_ssl_keyfile"),
            )
        )
    for key in security.client_properties:
        if not PROPERTY_NAME.match(key):
            problems.append(
                (
                    f"kafka_client_properties: {re.sub(r'[^a-zA-Z0-9._-]', '?', key)!r} is not a client "
                    "property name (lower-case words joined by dots, e.g. compression.type)",
                    ("kafka_client_properties",),
                )
            )
        elif key in reserved:
            problems.append(
                (
                    f"kafka_client_properties: {key} is set by StockWatch itself (use its setting)",
                    ("kafka_client_properties",),
                )
            )
    return problems


def shown_properties(properties: dict[str, Any]) -> str:
    """The client properties for `stockwatch config`: the values of password-like keys masked."""
    shown = {k: SECRET_MASK if SECRET_PROPERTY.search(k) else v for k, v in properties.items()}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "{}"
