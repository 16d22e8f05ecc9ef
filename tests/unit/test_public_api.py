"""Each package's public API is pinned: its ``__init__`` has an ``__all__`` of exactly these
names, and each resolves. A name added, removed or renamed fails here until the pin follows, so
an API change is a visible decision. Packages whose modules are the API (no re-exports) are
checked to stay that way, and every package of the project is in one list or the other."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# These pins repeat each package's ``__all__`` on purpose (``duplicates`` pairs them with the
# ``__init__`` modules): a second copy that must be edited too is what makes a change visible.

PINNED: dict[str, frozenset[str]] = {
    "ingest.decoders.battery": frozenset(
        {
            "ALARM_FLAGS",
            "BATTERY",
            "PackAlarm",
            "PackCells",
            "PackFrame",
            "PackLogin",
            "PackLogout",
            "PackProbes",
            "PackState",
            "Site",
            "alarm_flag_names",
            "decode_pack_frame",
            "decode_pack_rows",
            "decode_pack_rows_batch",
            "encode_pack_frame",
            "pack_code_to_dict",
            "pack_frame_to_dict",
            "pack_frame_to_json",
            "pack_ident",
            "rows_of_pack_frame",
        }
    ),
    "ingest.gateway.tcec": frozenset(
        {
            "NOTIFICATIONS",
            "EnvelopeError",
            "OperatorSecrets",
            "OperatorsError",
            "Ret",
            "TcecParams",
            "TcecServer",
            "params_from_settings",
            "start_tcec",
        }
    ),
    "ingest.decoders.charger": frozenset(
        {
            "COMMANDS",
            "ChargeOrder",
            "ChargerFrame",
            "ChargerLogin",
            "ChargerLogout",
            "ConnectorEntry",
            "ConnectorStatus",
            "Faults",
            "INTERFACES",
            "OPERATOR_ID_RULE",
            "Output",
            "TCEC_REASONS",
            "VehicleDemand",
            "charger_rows_to_dict",
            "decode_charger_frame",
            "decode_charger_rows",
            "decode_charger_rows_batch",
            "decode_tcec",
            "encode_charger_frame",
            "is_operator_id",
            "is_seq",
            "parse_tcec_timestamp",
            "push_time",
            "rows_of_charger_frame",
        }
    ),
    "contract": frozenset({"CHINA_TZ", "Decoded", "ENTITY_KINDS", "EntityKind"}),
    "ingest.decoders": frozenset(
        {
            "Activation",
            "ActivationResponse",
            "Alarm",
            "BitLevel",
            "CellTemperatures",
            "CellVoltages",
            "Control",
            "CustomBlock",
            "DriveMotors",
            "Engine",
            "Extremes",
            "Frame",
            "FrameError",
            "FuelCell",
            "FuelCellStacks",
            "KeyExchange",
            "Login",
            "Logout",
            "Motor",
            "Param",
            "ParamList",
            "PlatformLogin",
            "Position",
            "QueryRequest",
            "RawFrame",
            "Signature",
            "Skipped",
            "Stack",
            "StreamFramer",
            "SuperCapacitor",
            "SuperCapacitorExtremes",
            "TemperaturePack",
            "Upgrade",
            "Vehicle",
            "VoltagePack",
            "decode_frame",
            "encode_block",
            "encode_body",
            "encode_frame",
            "error_to_dict",
            "frame_to_dict",
            "frame_to_json",
            "make_response",
        }
    ),
    "ingest.config": frozenset(
        {
            "ENTITY_KINDS",
            "SECTIONS",
            "AlertsSettings",
            "KafkaSettings",
            "LogSettings",
            "MetricsSettings",
            "PipelineSettings",
            "PostgresSettings",
            "Settings",
            "StorageSettings",
        }
    ),
    "storage": frozenset(
        {
            "BatchOutcome",
            "Dedupe",
            "LoaderKind",
            "MigrationError",
            "MigrationReport",
            "OffsetRange",
            "PlainParams",
            "PoolParams",
            "RejectedFrame",
            "RetryParams",
            "SchemaError",
            "SchemaMode",
            "ServerInfo",
            "StorageError",
            "StorageParams",
            "StorageUnavailable",
            "StorageWriter",
            "TimescaleParams",
            "WriteResult",
            "WriterHooks",
            "WriterParams",
            "migrate",
            "run_maintenance",
        }
    ),
    "alerts": frozenset(
        {
            "AlertChange",
            "AlertRecord",
            "Rule",
            "RuleEngine",
            "RuleEngineStats",
            "RuleFileError",
            "RuleProblem",
            "RuleSet",
            "Scope",
            "to_message",
        }
    ),
    "ingest.pipeline": frozenset(
        {
            "AlertMessage",
            "BeforeCommit",
            "Sink",
            "SinkResult",
            "TransientSinkError",
            "WorkerOptions",
        }
    ),
    "ingest.gateway": frozenset({"ExtraServer", "Gateway", "GatewayMetrics"}),
    "ingest.cli": frozenset({"COMMANDS", "DEV_COMMANDS", "build_parser", "dev_commands", "main"}),
    "devtools.dashboards": frozenset(
        {"DASHBOARDS", "OUT_DIR", "export", "panel_targets", "render"}
    ),
}

# Packages that re-export nothing: their modules are the API.
NAMESPACES = frozenset(
    {
        "ingest",
        "ingest.decoders.blocks",
        "ingest.decoders.commands",
        "devtools",
        "devtools.demo",
        "devtools.sim",
        "loadtest",
    }
)

# Has an ``__all__`` (checked to resolve) but its exact set belongs to the dev stack's owner.
UNPINNED = frozenset({"devtools.devstack"})


@pytest.mark.parametrize("package", sorted(PINNED))
def test_exports_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    exported = module.__all__
    assert len(exported) == len(set(exported)), "a name listed twice"
    assert set(exported) == PINNED[package]


@pytest.mark.parametrize("package", sorted(PINNED | dict.fromkeys(UNPINNED)))
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert missing == []


@pytest.mark.parametrize("package", sorted(NAMESPACES))
def test_namespace_packages_export_nothing(package: str) -> None:
    module = importlib.import_module(package)
    assert not hasattr(module, "__all__")
    public = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    ]
    assert public == []


def test_every_package_is_accounted_for() -> None:
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("contract", "ingest", "storage", "alerts", "devtools", "loadtest")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == set(PINNED) | NAMESPACES | UNPINNED
