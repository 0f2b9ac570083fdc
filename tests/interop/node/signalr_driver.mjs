#!/usr/bin/env node
// JSON Lines driver around the real @microsoft/signalr client, used by the
// Python interop tests. Commands arrive one JSON object per line on stdin;
// every result/event goes to stdout as one JSON object per line with "ev" and
// "t" (Date.now() in ms). Diagnostics (client logs included) go to stderr only.
//
// Commands: start, invoke, send, state, stop (see the interop test helpers).
// Extensions beyond the basic contract:
//   - an "id" given on start/state/stop is echoed on their replies;
//   - start accepts optional "headers" (object) and "statefulReconnect" (bool);
//   - "transport" may also be an array of transport names (OR-ed together);
//   - in invoke/send args, an object {"$bytes": "<base64>"} becomes a Uint8Array,
//     and binary values in results/events are written as {"$bytes": "<base64>"};
//     BigInt values are written as numbers when safe, otherwise as strings.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import readline from "node:readline";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const { HubConnectionBuilder, HttpTransportType, LogLevel } = signalR;

// ---------------------------------------------------------------- output

function jsonReplacer(key, value) {
  // `this[key]` is the original value (before toJSON, e.g. Buffer.toJSON).
  const orig = this[key];
  if (orig instanceof Uint8Array) {
    return { $bytes: Buffer.from(orig.buffer, orig.byteOffset, orig.byteLength).toString("base64") };
  }
  if (orig instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(orig).toString("base64") };
  }
  if (typeof value === "bigint") {
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (value instanceof Map) {
    return Object.fromEntries(value);
  }
  if (value instanceof Set) {
    return Array.from(value);
  }
  return value;
}

function emit(obj) {
  const out = { ...obj, t: Date.now() };
  let line;
  try {
    line = JSON.stringify(out, jsonReplacer);
  } catch (err) {
    line = JSON.stringify({
      ev: "error",
      message: `could not serialise ${String(obj && obj.ev)} event: ${String(err)}`,
      t: out.t,
    });
  }
  process.stdout.write(line + "\n");
}

function errString(err) {
  if (err === undefined || err === null) return "";
  return String(err);
}

function logErr(msg) {
  process.stderr.write(`[driver] ${msg}\n`);
}

// ---------------------------------------------------------------- helpers

function readPkgVersion(spec) {
  try {
    const require = createRequire(import.meta.url);
    const file = require.resolve(`${spec}/package.json`);
    return JSON.parse(readFileSync(file, "utf8")).version ?? null;
  } catch (err) {
    logErr(`cannot read ${spec} version: ${String(err)}`);
    return null;
  }
}

const LEVELS = {
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  information: LogLevel.Information,
  info: LogLevel.Information,
  warning: LogLevel.Warning,
  warn: LogLevel.Warning,
  error: LogLevel.Error,
  critical: LogLevel.Critical,
  none: LogLevel.None,
};

class StderrLogger {
  constructor(minLevel) {
    this.minLevel = minLevel;
  }
  log(level, message) {
    if (level >= this.minLevel && level !== LogLevel.None) {
      process.stderr.write(`[${LogLevel[level] ?? level}] ${message}\n`);
    }
  }
}

function resolveTransport(spec) {
  if (spec === undefined || spec === null) return undefined;
  const names = Array.isArray(spec) ? spec : [spec];
  let value = 0;
  for (const name of names) {
    const v = typeof name === "number" ? name : HttpTransportType[name];
    if (typeof v !== "number") {
      throw new Error(`unknown transport ${JSON.stringify(name)}`);
    }
    value |= v;
  }
  return value;
}

function appendQuery(url, key, value) {
  const hashIdx = url.indexOf("#");
  const base = hashIdx >= 0 ? url.slice(0, hashIdx) : url;
  const hash = hashIdx >= 0 ? url.slice(hashIdx) : "";
  const sep = base.includes("?") ? (base.endsWith("?") || base.endsWith("&") ? "" : "&") : "?";
  return `${base}${sep}${key}=${encodeURIComponent(value)}${hash}`;
}

// {"$bytes": "<base64>"} -> Uint8Array, recursively.
function decodeArgs(value) {
  if (Array.isArray(value)) return value.map(decodeArgs);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bytes" && typeof value.$bytes === "string") {
      return new Uint8Array(Buffer.from(value.$bytes, "base64"));
    }
    const out = {};
    for (const k of keys) out[k] = decodeArgs(value[k]);
    return out;
  }
  return value;
}

function statusCodeOf(err) {
  if (!err) return null;
  if (typeof err.statusCode === "number") return err.statusCode;
  // FailedToNegotiateWithServerError and AggregateErrors keep only the text of
  // the underlying HttpError ("...: Status code '401'").
  if (Array.isArray(err.innerErrors)) {
    for (const inner of err.innerErrors) {
      const c = statusCodeOf(inner);
      if (c !== null) return c;
    }
  }
  const m = /Status code '(\d{3})'/.exec(String(err.message ?? err));
  return m ? Number(m[1]) : null;
}

function withId(cmd, obj) {
  if (cmd && Object.prototype.hasOwnProperty.call(cmd, "id")) {
    return { ...obj, id: cmd.id };
  }
  return obj;
}

// ---------------------------------------------------------------- state

let connection = null;
let startPromise = null;
let shuttingDown = null;

function buildConnection(cmd) {
  if (typeof cmd.url !== "string" || cmd.url === "") {
    throw new Error("start: 'url' must be a non-empty string");
  }
  const key = cmd.key ?? null;
  const keyVia = cmd.keyVia ?? (key !== null ? "factory" : "none");
  if (!["factory", "query", "none"].includes(keyVia)) {
    throw new Error(`start: unknown keyVia ${JSON.stringify(keyVia)}`);
  }

  let url = cmd.url;
  if (keyVia === "query" && key !== null) {
    url = appendQuery(url, "access_token", String(key));
  }

  const options = {
    transport: resolveTransport(cmd.transport),
    skipNegotiation: Boolean(cmd.skipNegotiation),
  };
  if (keyVia === "factory" && key !== null) {
    const token = String(key);
    options.accessTokenFactory = () => token;
  }
  if (cmd.headers && typeof cmd.headers === "object") {
    options.headers = { ...cmd.headers };
  }

  const levelName = String(cmd.logLevel ?? "warning").toLowerCase();
  const level = LEVELS[levelName] ?? LogLevel.Warning;

  let builder = new HubConnectionBuilder()
    .withUrl(url, options)
    .configureLogging(new StderrLogger(level));

  const protocol = cmd.protocol ?? "json";
  if (protocol === "messagepack") {
    builder = builder.withHubProtocol(new MessagePackHubProtocol());
  } else if (protocol !== "json") {
    throw new Error(`start: unknown protocol ${JSON.stringify(protocol)}`);
  }

  if (cmd.reconnect === true) {
    builder = builder.withAutomaticReconnect();
  } else if (Array.isArray(cmd.reconnect)) {
    builder = builder.withAutomaticReconnect(cmd.reconnect);
  } else if (cmd.reconnect !== undefined && cmd.reconnect !== null && cmd.reconnect !== false) {
    throw new Error("start: 'reconnect' must be true, false or an array of delays in ms");
  }

  if (cmd.statefulReconnect) {
    builder = builder.withStatefulReconnect();
  }

  const conn = builder.build();
  if (typeof cmd.serverTimeoutMs === "number") {
    conn.serverTimeoutInMilliseconds = cmd.serverTimeoutMs;
  }
  if (typeof cmd.keepAliveMs === "number") {
    conn.keepAliveIntervalInMilliseconds = cmd.keepAliveMs;
  }

  for (const name of cmd.events ?? []) {
    conn.on(String(name), (...args) => emit({ ev: "event", target: String(name), args }));
  }

  conn.onreconnecting((err) => emit({ ev: "reconnecting", error: errString(err) }));
  conn.onreconnected((id) => emit({ ev: "reconnected", connectionId: id ?? null }));
  conn.onclose((err) => emit({ ev: "closed", error: err ? String(err) : null }));
  return conn;
}

function cmdStart(cmd) {
  if (connection && connection.state !== signalR.HubConnectionState.Disconnected) {
    emit(withId(cmd, {
      ev: "start_failed",
      error: `a connection already exists (state ${connection.state})`,
      statusCode: null,
    }));
    return;
  }
  let conn;
  try {
    conn = buildConnection(cmd);
  } catch (err) {
    emit(withId(cmd, { ev: "start_failed", error: String(err), statusCode: null }));
    return;
  }
  connection = conn;
  const p = conn.start().then(
    () => emit(withId(cmd, { ev: "started", connectionId: conn.connectionId ?? null })),
    (err) => emit(withId(cmd, {
      ev: "start_failed",
      error: String(err),
      statusCode: statusCodeOf(err),
      errorType: (err && (err.errorType || err.name)) || null,
    })),
  );
  startPromise = p;
  p.finally(() => {
    if (startPromise === p) startPromise = null;
  });
}

function requireConnection(cmd, failEv) {
  if (!connection) {
    emit({ ev: failEv, id: cmd.id ?? null, error: "Error: no connection (send a start command first)" });
    return false;
  }
  return true;
}

function checkMethod(cmd, failEv) {
  if (typeof cmd.method !== "string" || cmd.method === "") {
    emit({ ev: failEv, id: cmd.id ?? null, error: "Error: 'method' must be a non-empty string" });
    return false;
  }
  if (cmd.args !== undefined && !Array.isArray(cmd.args)) {
    emit({ ev: failEv, id: cmd.id ?? null, error: "Error: 'args' must be an array" });
    return false;
  }
  return true;
}

function cmdInvoke(cmd) {
  if (!requireConnection(cmd, "invoke_error") || !checkMethod(cmd, "invoke_error")) return;
  const id = cmd.id ?? null;
  let p;
  try {
    p = connection.invoke(cmd.method, ...decodeArgs(cmd.args ?? []));
  } catch (err) {
    emit({ ev: "invoke_error", id, error: String(err) });
    return;
  }
  p.then(
    (result) => emit({ ev: "invoke_result", id, result: result === undefined ? null : result }),
    (err) => emit({ ev: "invoke_error", id, error: String(err) }),
  );
}

function cmdSend(cmd) {
  if (!requireConnection(cmd, "send_error") || !checkMethod(cmd, "send_error")) return;
  const id = cmd.id ?? null;
  let p;
  try {
    p = connection.send(cmd.method, ...decodeArgs(cmd.args ?? []));
  } catch (err) {
    emit({ ev: "send_error", id, error: String(err) });
    return;
  }
  p.then(
    () => emit({ ev: "sent", id }),
    (err) => emit({ ev: "send_error", id, error: String(err) }),
  );
}

function cmdState(cmd) {
  emit(withId(cmd, {
    ev: "state",
    state: connection ? connection.state : null,
    connectionId: connection ? (connection.connectionId ?? null) : null,
  }));
}

function exitAfterDrain(code) {
  // Write callbacks run in order, so this one fires after all earlier lines.
  process.stdout.write("", () => process.exit(code));
}

// On stdin EOF nobody may be listening any more, so stop() gets at most this
// long; an explicit "stop" command waits for stop() without a limit.
const EOF_STOP_LIMIT_MS = 5000;

function shutdown(cmd, reason) {
  if (shuttingDown) return shuttingDown;
  shuttingDown = (async () => {
    let stopError = null;
    if (connection) {
      const stopping = (async () => {
        try {
          await connection.stop();
        } catch (err) {
          stopError = String(err);
        }
        if (startPromise) await startPromise; // lets start_failed come out first
      })();
      if (reason === "eof") {
        let timer;
        const limit = new Promise((resolve) => {
          timer = setTimeout(() => {
            stopError = `stop() did not finish within ${EOF_STOP_LIMIT_MS} ms`;
            resolve();
          }, EOF_STOP_LIMIT_MS);
        });
        await Promise.race([stopping, limit]);
        clearTimeout(timer);
      } else {
        await stopping;
      }
    }
    const ev = withId(cmd, { ev: "stopped" });
    if (reason !== "stop") ev.reason = reason;
    if (stopError !== null) ev.error = stopError;
    emit(ev);
    exitAfterDrain(0);
  })();
  return shuttingDown;
}

function handleLine(line) {
  const text = line.trim();
  if (text === "") return;
  let cmd;
  try {
    cmd = JSON.parse(text);
  } catch (err) {
    emit({ ev: "error", message: `bad JSON: ${String(err)}`, line: text.slice(0, 500) });
    return;
  }
  if (!cmd || typeof cmd !== "object" || Array.isArray(cmd)) {
    emit({ ev: "error", message: "command must be a JSON object", line: text.slice(0, 500) });
    return;
  }
  if (shuttingDown) {
    emit({ ev: "error", message: `driver is stopping; ignored command ${JSON.stringify(cmd.cmd)}` });
    return;
  }
  switch (cmd.cmd) {
    case "start":
      cmdStart(cmd);
      break;
    case "invoke":
      cmdInvoke(cmd);
      break;
    case "send":
      cmdSend(cmd);
      break;
    case "state":
      cmdState(cmd);
      break;
    case "stop":
      shutdown(cmd, "stop");
      break;
    default:
      emit({ ev: "error", message: `unknown command ${JSON.stringify(cmd.cmd ?? null)}` });
  }
}

// ---------------------------------------------------------------- main

process.on("uncaughtException", (err) => {
  logErr(`uncaught exception: ${err && err.stack ? err.stack : String(err)}`);
  emit({ ev: "error", message: `uncaught exception: ${String(err)}` });
});
process.on("unhandledRejection", (reason) => {
  logErr(`unhandled rejection: ${reason && reason.stack ? reason.stack : String(reason)}`);
  emit({ ev: "error", message: `unhandled rejection: ${String(reason)}` });
});
process.stdout.on("error", (err) => {
  // The reader went away (EPIPE): nothing more can be reported.
  logErr(`stdout error: ${String(err)}`);
  process.exit(0);
});

emit({
  ev: "ready",
  signalrVersion: readPkgVersion("@microsoft/signalr"),
  msgpackVersion: readPkgVersion("@microsoft/signalr-protocol-msgpack"),
  node: process.version,
});

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on("line", (line) => {
  try {
    handleLine(line);
  } catch (err) {
    emit({ ev: "error", message: `command failed: ${String(err)}` });
  }
});
rl.on("close", () => {
  shutdown(null, "eof");
});
