"""A Grafana PostgreSQL query for grafana-foundation-sdk, which has builders for many data
sources but not (in the pinned release) for ``grafana-postgresql-datasource``: the query's
JSON is small and stable (refId, rawSql, format, rawQuery, editorMode), so it is one class here
instead of hand-written panel JSON."""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = ["POSTGRES", "PROMETHEUS", "SqlQuery", "SqlQueryBuilder"]

# The uids the provisioned data sources have (deploy/grafana/provisioning/datasources).
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="nev-prometheus")
POSTGRES = DataSourceRef(type_val="grafana-postgresql-datasource", uid="nev-postgres")

SqlFormat = Literal["table", "time_series"]


class SqlQuery(cogvariants.Dataquery):
    """One raw-SQL target of a PostgreSQL panel."""

    def __init__(self, ref_id: str, raw_sql: str, format_val: SqlFormat) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val = format_val

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": POSTGRES.to_json(),
            "editorMode": "code",
            "format": self.format_val,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(str(data["refId"]), str(data["rawSql"]), data.get("format", "table"))


class SqlQueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    """``SqlQueryBuilder(sql)`` as a panel target (``with_target``)."""

    def __init__(self, raw_sql: str, *, ref_id: str = "A", fmt: SqlFormat = "table") -> None:
        self._query = SqlQuery(ref_id, raw_sql.strip(), fmt)

    def build(self) -> cogvariants.Dataquery:
        return self._query
