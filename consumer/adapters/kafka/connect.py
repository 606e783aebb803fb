"""The keywords of every kafka-python client outside the consume hot path (control, ctl, tools, admin).

They take a :class:`config.KafkaSettings` (its broker, security and client properties) or, for
tests and the demo on the local PLAINTEXT stack, a bare bootstrap address.
"""

from __future__ import annotations

from typing import Any

from config.kafka import KafkaSettings
from consumer.adapters.kafka import bounded_codecs
from consumer.adapters.kafka.client_config import kafka_python_config

__all__ = ["Broker", "address", "client_kwargs"]

Broker = str | KafkaSettings


def address(broker: Broker) -> str:
    """The bootstrap address, for messages."""
    return broker if isinstance(broker, str) else broker.bootstrap


def client_kwargs(broker: Broker, client: type, *, client_id: str, **fixed: Any) -> dict[str, Any]:
    """``client``'s keywords for ``broker``: bootstrap, client id, security, client properties,
    then ``fixed`` (what this client needs; it wins over a client property of the same name).

    Every kafka-python client reads through the bounded codecs (:mod:`.bounded_codecs`): a bare
    address keeps the cap in force (64 MiB unless a :class:`KafkaSettings` set another).
    """
    bounded_codecs.install(broker.decompressed_batch_cap if isinstance(broker, KafkaSettings) else None)
    if isinstance(broker, str):
        return {"bootstrap_servers": broker, "client_id": client_id, **fixed}
    return {**kafka_python_config(broker.client_config(client_id=client_id), client), **fixed}
