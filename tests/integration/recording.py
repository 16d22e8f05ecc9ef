"""A real database connection that keeps the statements sent through its ``execute``."""

from __future__ import annotations

from typing import Any

__all__ = ["Recording"]


class Recording:
    """The real connection, with the statements sent through ``execute`` kept in order:
    ``sent`` their first words (``UPDATE``, ``INSERT``), ``statements`` their whole text."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.sent: list[str] = []
        self.statements: list[str] = []

    async def execute(self, sql: str, *args: Any) -> str:
        self.sent.append(sql.strip().split(None, 1)[0])
        self.statements.append(sql)
        status: str = await self.conn.execute(sql, *args)
        return status

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)
