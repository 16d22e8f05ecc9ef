"""The ingest pipeline: Kafka consumer group -> decode -> batched transactional writes -> commit.

``supervisor`` runs N worker processes; each ``worker`` owns one aiokafka consumer in the group,
builds ``batch``-es, writes them through a ``sink`` (storage writer + rule engine in one
transaction with the Kafka offsets) and sends bad input to the dead-letter topic (``wire``).
"""
