#!/usr/bin/env node
// The Node.js reference client of the contract suite: a driver-protocol client
// (../../../shared/spec/driver-protocol.md) that does what Conduit's Real-Time API Guide
// documents, on the real @microsoft/signalr client. See docs/reference-clients.md for the knobs,
// the behaviour and the mutants.
//
//   node contract_tests/clients/node_client.mjs [--mutant NAME]
//
// stdin: JSON Lines commands (track, untrack, shutdown). stdout: observation lines only.
// stderr: logs (the SignalR client's own at Warning and above).
//
// What it does, after the guide:
//   - one HubConnection per hub (image: SubscribeToTask, video: SubscribeToRequest), built with
//     accessTokenFactory, withAutomaticReconnect(delays) (or the guide's formula policy), server
//     timeout and keep-alive from the knobs; never more than CONDUIT_MAX_CONNECTIONS (oldest out);
//   - onreconnected: subscribe every still-active task again and poll each once (a task may have
//     ended while disconnected); onclose: one manual start() after CONDUIT_MANUAL_RESTART_MS;
//     when that fails too the connection is lost for good and its `auto` tasks move to polling;
//   - polling: first poll at once, then one every CONDUIT_POLL_INTERVAL_MS (measured from the
//     previous answer), at most CONDUIT_POLL_LIMIT polls, then `timeout`; a failed poll does not
//     end tracking; Retry-After on an error answer pushes the next request back;
//   - every outcome once, progress only upwards and never after the outcome; a finished task is
//     unsubscribed.

import { createRequire } from "node:module";
import readline from "node:readline";
import * as signalR from "@microsoft/signalr";

const { HubConnectionBuilder, HubConnectionState, HttpTransportType, LogLevel, DefaultHttpClient } = signalR;

const NAME = "node-reference";
const ROLES = ["signalr", "polling"];

// ---------------------------------------------------------------- mutants

// Each breaks exactly one rule; the contract suite must fail it on that rule.
const MUTANTS = {
  "no-backoff": ["C-RECONNECT-SCHEDULE", "reconnects at once, again and again, ignoring the delays"],
  "short-delays": ["C-RECONNECT-SCHEDULE", "uses delays of a tenth of the declared ones"],
  "never-gives-up": ["C-RECONNECT-SCHEDULE",
    "keeps reconnecting (last delay repeated) after the schedule ends"],
  "reconnect-after-close": ["C-RECONNECT-CLOSE", "reconnects at once after a Close without allowReconnect"],
  "no-resubscribe": ["C-RESUBSCRIBE",
    "does not subscribe again after a reconnect (polls those tasks instead)"],
  "misses-terminal": ["C-NO-LOST-TERMINAL",
    "after a reconnect neither polls nor learns what ended meanwhile"],
  "resubscribes-no-catchup": ["C-NO-LOST-TERMINAL",
    "after an automatic reconnect subscribes again but never polls for what ended meanwhile; " +
    "catches up only after a manual restart"],
  "no-fallback": ["C-FALLBACK", "`auto` never falls back to polling when SignalR cannot connect"],
  "polls-too-often": ["C-POLL-INTERVAL",
    "polls at a fifth of the interval (for as long as the limit's time)"],
  "no-poll-limit": ["C-POLL-LIMIT", "never gives up polling"],
  "polls-after-terminal": ["C-POLL-STOP", "keeps polling a few times after the terminal status"],
  "stops-on-poll-error": ["C-POLL-ERRORS", "stops tracking at the first failed poll"],
  "ignores-retry-after": ["C-RETRY-AFTER", "ignores Retry-After"],
  "progress-backwards": ["C-OUTCOME",
    "reports progress in arrival order even when lower, and a duplicated completion"],
  "reports-completion-twice": ["C-OUTCOME",
    "reports a terminal event each time it arrives, by SignalR or by a poll"],
  "slow-handling": ["C-LATENCY", "takes 400 ms to handle each event"],
  "no-auth-on-connect": ["C-AUTH", "sends the key on negotiate but not on the connection itself"],
  "connection-per-task": ["C-POOL", "opens a new hub connection for every tracked task"],
  "no-cleanup": ["C-CLEANUP", "never unsubscribes a finished task"],
};

// no-backoff: how many zero-delay attempts before it stops (a bound, so a dead server is not
// hammered for ever; "never-gives-up" is the unbounded one).
const NO_BACKOFF_ATTEMPTS = 100;
const POLLS_AFTER_TERMINAL = 3;
const SLOW_HANDLING_MS = 400;
const POLL_REQUEST_TIMEOUT_MS = 10000;
const RECONNECT_POLL_ATTEMPTS = 3; // the one poll after a reconnect, retried if it fails
const STOP_LIMIT_MS = 5000;

function usage(message) {
  const lines = Object.entries(MUTANTS)
    .map(([name, [rule, what]]) => `  ${name.padEnd(22)} ${rule}: ${what}`);
  process.stderr.write(
    `${message}\nusage: node node_client.mjs [--mutant NAME]\nmutants:\n${lines.join("\n")}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  let mutant = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--mutant") {
      if (i + 1 >= argv.length) usage("--mutant needs a NAME");
      mutant = argv[++i];
    } else if (arg.startsWith("--mutant=")) {
      mutant = arg.slice("--mutant=".length);
    } else if (arg === "--list-mutants") {
      process.stdout.write(Object.keys(MUTANTS).join("\n") + "\n");
      process.exit(0);
    } else {
      usage(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (mutant !== null && !Object.hasOwn(MUTANTS, mutant)) usage(`unknown mutant ${JSON.stringify(mutant)}`);
  return mutant;
}

const MUTANT = parseArgs(process.argv.slice(2));
const is = (name) => MUTANT === name;

// ---------------------------------------------------------------- output

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function errorText(err) {
  if (err === undefined || err === null) return null;
  return String(err && err.message !== undefined ? err.message : err);
}

function log(msg) {
  process.stderr.write(`[${NAME}${MUTANT ? "/" + MUTANT : ""}] ${msg}\n`);
}

function report(message) {
  log(message);
  emit({ obs: "error", message });
}

class StderrLogger {
  constructor(minLevel) {
    this.minLevel = minLevel;
  }
  log(level, message) {
    if (level >= this.minLevel && level !== LogLevel.None) {
      process.stderr.write(`[signalr ${LogLevel[level] ?? level}] ${message}\n`);
    }
  }
}

// ---------------------------------------------------------------- knobs

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

function envText(name, fallback) {
  const raw = process.env[name];
  return raw === undefined || raw.trim() === "" ? fallback : raw.trim();
}

function envMs(name, fallback, min = 0) {
  const raw = envText(name, null);
  if (raw === null) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    fail(`${name} must be a number >= ${min}, not ${JSON.stringify(raw)}`);
  }
  return value;
}

function parseDelays(raw) {
  if (raw.toLowerCase() === "formula") return "formula";
  if (raw.toLowerCase() === "none") return [];
  const delays = raw.split(",").map((part) => Number(part.trim()));
  if (delays.some((d) => !Number.isFinite(d) || d < 0)) {
    fail("CONDUIT_RECONNECT_DELAYS_MS must be comma-separated milliseconds or \"formula\", "
      + `not ${JSON.stringify(raw)}`);
  }
  return delays;
}

const BASE_URL = envText("CONDUIT_BASE_URL", null);
const KEY = envText("CONDUIT_VIRTUAL_KEY", null);
if (BASE_URL === null) fail("CONDUIT_BASE_URL is required");
if (KEY === null) fail("CONDUIT_VIRTUAL_KEY is required");

const TRANSPORT_NAME = envText("CONDUIT_TRANSPORT", "WebSockets");
if (!["WebSockets", "ServerSentEvents", "LongPolling"].includes(TRANSPORT_NAME)) {
  fail("CONDUIT_TRANSPORT must be WebSockets, ServerSentEvents or LongPolling, "
    + `not ${JSON.stringify(TRANSPORT_NAME)}`);
}

const CONFIG = {
  baseUrl: BASE_URL.replace(/\/+$/, ""),
  key: KEY,
  delays: parseDelays(envText("CONDUIT_RECONNECT_DELAYS_MS", "0,2000,10000,30000")),
  manualRestartMs: envMs("CONDUIT_MANUAL_RESTART_MS", 5000),
  pollIntervalMs: envMs("CONDUIT_POLL_INTERVAL_MS", 5000),
  pollLimit: envMs("CONDUIT_POLL_LIMIT", 60, 1),
  serverTimeoutMs: envMs("CONDUIT_SERVER_TIMEOUT_MS", 30000, 1),
  keepAliveMs: envMs("CONDUIT_KEEPALIVE_MS", 15000, 1),
  transport: HttpTransportType[TRANSPORT_NAME],
  maxConnections: envMs("CONDUIT_MAX_CONNECTIONS", 5, 1),
  logLevel: LogLevel[envText("CONDUIT_LOG_LEVEL", "Warning")] ?? LogLevel.Warning,
};

// ---------------------------------------------------------------- reconnect policy

// The declared schedule: the delay before reconnect attempt n+1, or null when it has ended.
function declaredDelay(n) {
  if (CONFIG.delays === "formula") return Math.min(1000 * 2 ** n, 30000); // the guide's custom policy
  return n < CONFIG.delays.length ? CONFIG.delays[n] : null;
}

function retryDelay(n) {
  if (is("no-backoff")) return n < NO_BACKOFF_ATTEMPTS ? 0 : null;
  if (is("short-delays")) {
    const delay = declaredDelay(n);
    return delay === null ? null : delay / 10;
  }
  if (is("never-gives-up")) {
    const delay = declaredDelay(n);
    if (delay !== null || CONFIG.delays === "formula" || CONFIG.delays.length === 0) return delay;
    return CONFIG.delays[CONFIG.delays.length - 1];
  }
  return declaredDelay(n);
}

function withReconnect(builder) {
  if (MUTANT === null && Array.isArray(CONFIG.delays)) {
    return builder.withAutomaticReconnect(CONFIG.delays); // the library's own array policy
  }
  return builder.withAutomaticReconnect({
    nextRetryDelayInMilliseconds: (context) => retryDelay(context.previousRetryCount),
  });
}

// ---------------------------------------------------------------- no-auth-on-connect

// The key still goes to negotiate (through accessTokenFactory), but the connection itself — the
// WebSocket upgrade, the SSE stream, long-poll requests — goes without it.
function stripTokenQuery(url) {
  const parsed = new URL(url);
  parsed.searchParams.delete("access_token");
  return parsed.toString();
}

function noAuthOptions() {
  const requireFromSignalR = createRequire(createRequire(import.meta.url).resolve("@microsoft/signalr"));
  const WS = requireFromSignalR("ws");
  const EventSource = requireFromSignalR("eventsource");

  class UnauthenticatedWebSocket extends WS {
    constructor(url, protocols, options) {
      const headers = { ...(options?.headers ?? {}) };
      for (const name of Object.keys(headers)) {
        if (name.toLowerCase() === "authorization") delete headers[name];
      }
      super(stripTokenQuery(url), protocols, { ...(options ?? {}), headers });
    }
  }

  class UnauthenticatedEventSource extends EventSource {
    constructor(url, init) {
      super(stripTokenQuery(url), init);
    }
  }

  class UnauthenticatedHttpClient extends DefaultHttpClient {
    send(request) {
      const isConnection = request.url && !request.url.includes("/negotiate") && /[?&]id=/.test(request.url);
      if (isConnection && request.headers) {
        const headers = { ...request.headers };
        delete headers.Authorization;
        request = { ...request, headers };
      }
      return super.send(request);
    }
  }

  return {
    WebSocket: UnauthenticatedWebSocket,
    EventSource: UnauthenticatedEventSource,
    httpClient: new UnauthenticatedHttpClient(new StderrLogger(CONFIG.logLevel)),
  };
}

// ---------------------------------------------------------------- tasks

// The guide's hubs and status route. CONDUIT_DIALECT (JSON {hubs, status_paths}, which the suite
// builds from the simulator profile it serves) replaces them, e.g. with conduit-2025.08's.
const DOCUMENTED_DIALECT = {
  hubs: {
    image: {
      path: "/hubs/image-generation", subscribe: "SubscribeToTask", unsubscribe: "UnsubscribeFromTask",
      progress: "TaskProgress", completed: "TaskCompleted", failed: "TaskFailed",
    },
    video: {
      path: "/hubs/video-generation", subscribe: "SubscribeToRequest", unsubscribe: "UnsubscribeFromRequest",
      progress: "RequestProgress", completed: "RequestCompleted", failed: "RequestFailed",
    },
  },
  status_paths: { image: "/api/tasks/{task_id}/status", video: "/api/tasks/{task_id}/status" },
};

function readDialect() {
  const raw = envText("CONDUIT_DIALECT", null);
  if (raw === null) return DOCUMENTED_DIALECT;
  try {
    const dialect = JSON.parse(raw);
    if (dialect && typeof dialect.hubs === "object" && typeof dialect.status_paths === "object") return dialect;
  } catch {
    // reported below
  }
  fail("CONDUIT_DIALECT must be JSON {\"hubs\": {...}, \"status_paths\": {...}}");
  return null;
}

const DIALECT = readDialect();
const HUBS = DIALECT.hubs;

// An event's (task id, value): positional (taskId, value) in the guide's dialect, one object in
// the real server's (progressPercentage or progress; a status "cancelled" progress ends the task).
function decodeEvent(kind, args) {
  const [first, second] = args;
  if (args.length !== 1 || first === null || typeof first !== "object") {
    return { kind, taskId: first, value: second };
  }
  const taskId = first.taskId;
  if (kind === "progress" && first.status === "cancelled") {
    return { kind: "failed", taskId, value: first.message ?? "cancelled" };
  }
  if (kind === "progress") return { kind, taskId, value: first.progressPercentage ?? first.progress };
  if (kind === "completed") return { kind, taskId, value: first };
  return { kind, taskId, value: first.error ?? null };
}
const TERMINAL = new Set(["completed", "failed", "cancelled", "timedout"]);

const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let shuttingDown = false;
const tasks = new Map(); // task id -> Task, while tracked

class Task {
  constructor(id, kind, via) {
    this.id = id;
    this.kind = kind;
    this.via = via;
    this.hub = null; // the HubClient following it, if any
    this.polling = false; // a poll loop follows it
    this.done = false; // the outcome has been reported
    this.ended = false; // no longer tracked (finished, untracked, given up)
    this.subscribed = false; // a subscribe has succeeded at least once
    this.progress = -1;
    this.lastPollAt = null; // monotonic ms when the last poll's answer (or failure) came
    this.notBefore = 0; // monotonic ms before which no poll may go (Retry-After)
    this.inFlight = null; // the poll request under way
    this.pollError = false; // the last poll failed with a 5xx without Retry-After, or no answer
    this.pollOncePending = false;
    this._timer = null;
    this._wake = null;
  }

  // A sleep that untrack and shutdown cut short.
  sleep(ms) {
    return new Promise((resolve) => {
      this._wake = resolve;
      this._timer = setTimeout(resolve, Math.max(0, ms));
    });
  }

  wake() {
    clearTimeout(this._timer);
    if (this._wake) this._wake();
    this._wake = null;
  }

  // When the next poll may go: the interval after the last answer, and not before Retry-After.
  nextPollAt(interval) {
    const afterLast = this.lastPollAt === null ? 0 : this.lastPollAt + interval;
    return Math.max(afterLast, this.notBefore);
  }
}

function reportProgress(task, progress, source) {
  if (typeof progress !== "number" || task.ended) return;
  if (is("progress-backwards") && source === "event") {
    task.progress = progress;
    emit({ obs: "progress", task_id: task.id, progress });
    return;
  }
  if (task.done || progress <= task.progress) return;
  task.progress = progress;
  emit({ obs: "progress", task_id: task.id, progress });
}

// reports-completion-twice: the finished tasks, so that a terminal event arriving again is
// reported again (the bug).
const finishedTasks = new Map();

function reportOutcome(task, obs) {
  if (task.done && is("reports-completion-twice")) return emit(obs); // the bug: each arrival reported
  if (task.done || task.ended) return;
  task.done = true;
  emit(obs);
  if (is("reports-completion-twice")) finishedTasks.set(task.id, task);
  if (is("progress-backwards") && obs.obs === "completed") emit(obs);
  finish(task);
}

// The task is over for this client: stop following it, unsubscribe it.
function finish(task, { unsubscribe = true } = {}) {
  if (tasks.get(task.id) === task) tasks.delete(task.id);
  if (!(is("polls-after-terminal") && task.polling && task.done)) {
    task.ended = true;
    task.wake();
  }
  const hub = task.hub;
  if (hub) {
    hub.tasks.delete(task.id);
    task.hub = null;
    if (unsubscribe && task.subscribed && !(is("no-cleanup") && task.done)) hub.unsubscribe(task);
  }
}

// Apply a polled status body.
function applyStatus(task, body) {
  if (!body || typeof body !== "object") return;
  const status = String(body.status ?? "").toLowerCase();
  if (status === "completed") {
    reportOutcome(task, { obs: "completed", task_id: task.id, result: body.result ?? null });
  } else if (TERMINAL.has(status)) {
    reportOutcome(task, { obs: "failed", task_id: task.id, error: body.error ?? status });
  } else if (status !== "pending") {
    reportProgress(task, body.progress, "poll");
  }
}

// ---------------------------------------------------------------- polling

function retryAfterMs(header) {
  if (!header) return null;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? null : Math.max(0, date - Date.now());
}

// One GET of the guide's status route. Returns the body, or null when the poll failed.
function pollStatus(task) {
  task.inFlight = getStatus(task).finally(() => {
    task.inFlight = null;
  });
  return task.inFlight;
}

// Waits for the poll under way, then until the next poll may go.
async function waitForPollSlot(task, interval) {
  if (task.inFlight) await task.inFlight;
  await task.sleep(task.nextPollAt(interval) - now());
}

async function getStatus(task) {
  const path = DIALECT.status_paths[task.kind].replace("{task_id}", encodeURIComponent(task.id));
  const url = `${CONFIG.baseUrl}${path}`;
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${CONFIG.key}`, Accept: "application/json" },
      signal: AbortSignal.timeout(POLL_REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    task.lastPollAt = now();
    task.pollError = true;
    log(`poll of ${task.id} failed: ${errorText(err)}`);
    return null;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  task.lastPollAt = now();
  if (response.ok && body) return body;
  const wait = retryAfterMs(response.headers.get("retry-after"));
  task.pollError = response.status >= 500 && wait === null;
  if (wait !== null && !is("ignores-retry-after")) task.notBefore = task.lastPollAt + wait;
  log(`poll of ${task.id} answered ${response.status}${wait !== null ? ` (Retry-After ${wait} ms)` : ""}`);
  return null;
}

// polls-too-often polls five times as often, and so five times as many times: it gives up after
// the limit's worth of time (as the guide's "60 = 5 minutes at 5-second intervals" reads), not
// after the limit's number of polls, so it still follows tasks for as long as a correct client.
const TOO_OFTEN = 5;

function pollInterval() {
  return is("polls-too-often") ? CONFIG.pollIntervalMs / TOO_OFTEN : CONFIG.pollIntervalMs;
}

function pollLimit() {
  return is("polls-too-often") ? CONFIG.pollLimit * TOO_OFTEN : CONFIG.pollLimit;
}

// The guide's polling loop: first poll at once, then one per interval, at most pollLimit polls.
async function pollLoop(task) {
  if (task.polling || task.ended) return;
  task.polling = true;
  const interval = pollInterval();
  let polls = 0;
  let afterTerminal = 0;
  try {
    for (;;) {
      await waitForPollSlot(task, interval);
      if (task.ended || shuttingDown) return;
      if (task.done && !is("polls-after-terminal")) return;
      if (!task.done && polls >= pollLimit() && !is("no-poll-limit")) {
        emit({ obs: "timeout", task_id: task.id });
        task.done = true;
        finish(task);
        return;
      }
      polls += 1;
      const body = await pollStatus(task);
      if (task.ended || shuttingDown) return;
      if (task.done) { // polls-after-terminal: these polls are the bug, their answers ignored
        afterTerminal += 1;
        if (afterTerminal >= POLLS_AFTER_TERMINAL) {
          task.ended = true;
          return;
        }
        continue;
      }
      if (body === null) {
        // The mutant gives up on an error (5xx, network); throttling (Retry-After) it still obeys.
        if (is("stops-on-poll-error") && task.pollError) {
          report(`stopped tracking ${task.id} after a failed poll`);
          finish(task);
          return;
        }
        continue;
      }
      applyStatus(task, body);
    }
  } finally {
    task.polling = false;
  }
}

function startPolling(task) {
  if (task.ended) return;
  if (task.hub) {
    task.hub.tasks.delete(task.id);
    task.hub = null;
  }
  pollLoop(task).catch((err) => report(`polling ${task.id} failed: ${errorText(err)}`));
}

// After a reconnect: one poll, to learn what ended while the client was away. It keeps to the
// task's poll spacing; a failed poll is tried again a few times.
async function pollOnce(task) {
  if (task.pollOncePending) return;
  task.pollOncePending = true;
  try {
    for (let attempt = 0; attempt < RECONNECT_POLL_ATTEMPTS; attempt++) {
      await waitForPollSlot(task, CONFIG.pollIntervalMs);
      if (task.ended || task.done || task.polling || shuttingDown) return;
      const body = await pollStatus(task);
      if (body !== null) {
        applyStatus(task, body);
        return;
      }
    }
  } finally {
    task.pollOncePending = false;
  }
}

// ---------------------------------------------------------------- hub connections

let slowChain = Promise.resolve();
let connectionCount = 0;

class HubClient {
  constructor(kind, poolKey, after = Promise.resolve()) {
    this.kind = kind;
    this.after = after; // connections evicted to make room: closed before this one opens
    this.spec = HUBS[kind];
    this.poolKey = poolKey;
    this.number = ++connectionCount;
    this.tasks = new Map(); // task id -> Task followed over this connection
    this.reconnecting = false;
    this.everConnected = false;
    this.retired = false;
    this.starting = null;
    this.restartTimer = null;
    this.connection = this.build();
  }

  build() {
    const options = { transport: CONFIG.transport, accessTokenFactory: () => CONFIG.key };
    if (is("no-auth-on-connect")) Object.assign(options, noAuthOptions());
    const builder = new HubConnectionBuilder()
      .withUrl(CONFIG.baseUrl + this.spec.path, options)
      .withServerTimeout(CONFIG.serverTimeoutMs)
      .withKeepAliveInterval(CONFIG.keepAliveMs)
      .configureLogging(new StderrLogger(CONFIG.logLevel));
    const connection = withReconnect(builder).build();

    const on = (target, kind) => connection.on(target, (...args) => {
      const event = decodeEvent(kind, args);
      this.onEvent(event.kind, event.taskId, event.value);
    });
    on(this.spec.progress, "progress");
    on(this.spec.completed, "completed");
    on(this.spec.failed, "failed");
    connection.onreconnecting((err) => {
      this.reconnecting = true;
      this.state("reconnecting", err);
    });
    connection.onreconnected(() => {
      this.reconnecting = false;
      this.state("reconnected");
      this.afterReconnect(true);
    });
    connection.onclose((err) => this.onClose(err));
    return connection;
  }

  state(state, err) {
    const obs = { obs: "state", state, hub: this.spec.path };
    if (is("connection-per-task")) obs.connection = this.number;
    const text = errorText(err);
    if (text) obs.error = text;
    emit(obs);
  }

  get connected() {
    return this.connection.state === HubConnectionState.Connected;
  }

  // Follow a task over this connection: subscribe now, or on the (re)connect to come.
  follow(task) {
    task.hub = this;
    this.tasks.set(task.id, task);
    if (this.connected) {
      this.subscribe(task);
    } else if (!this.starting && !this.restartTimer && !this.reconnecting) {
      this.start();
    }
  }

  // start(), first or manual. Resolves to whether it connected.
  start() {
    if (this.starting) return this.starting;
    if (this.connection.state !== HubConnectionState.Disconnected || this.retired) {
      return Promise.resolve(this.connected);
    }
    this.state("connecting");
    this.starting = (async () => {
      try {
        await this.after;
        if (this.retired || shuttingDown) throw new Error("connection retired before it started");
        await this.connection.start();
      } catch (err) {
        this.state("disconnected", err);
        this.lostForGood(err);
        return false;
      }
      const again = this.everConnected;
      this.everConnected = true;
      this.state("connected");
      if (again) this.afterReconnect(false);
      else for (const task of [...this.tasks.values()]) this.subscribe(task);
      return true;
    })().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  async subscribe(task) {
    if (!this.connected || task.ended) return;
    try {
      await this.connection.invoke(this.spec.subscribe, task.id);
      task.subscribed = true;
      if (task.ended && task.hub === null && !(is("no-cleanup") && task.done)) this.unsubscribe(task);
    } catch (err) {
      const text = errorText(err);
      if (/on the server/.test(text) && this.tasks.get(task.id) === task) {
        // The server refused (e.g. "Unauthorized access to task"): nothing will ever come.
        report(`${this.spec.subscribe}(${task.id}) failed: ${text}`);
        finish(task, { unsubscribe: false });
      } else {
        log(`${this.spec.subscribe}(${task.id}) did not go through (${text}); retried on reconnect`);
      }
    }
  }

  unsubscribe(task) {
    if (!this.connected) return;
    this.connection.invoke(this.spec.unsubscribe, task.id)
      .catch((err) => log(`${this.spec.unsubscribe}(${task.id}) failed: ${errorText(err)}`));
  }

  // Back after a drop (`automatic`: by the reconnect schedule, else by a manual start()):
  // subscribe every still-active task again and poll each once.
  afterReconnect(automatic) {
    const catchUp = !is("misses-terminal") && !(automatic && is("resubscribes-no-catchup"));
    for (const task of [...this.tasks.values()]) {
      if (is("no-resubscribe") && task.subscribed) {
        startPolling(task); // the bug: no new subscription; the task is polled instead
        continue;
      }
      this.subscribe(task);
      if (catchUp) pollOnce(task).catch((err) => log(`poll of ${task.id}: ${errorText(err)}`));
    }
  }

  onClose(err) {
    const exhausted = this.reconnecting; // closed while reconnecting: the schedule ran out
    this.reconnecting = false;
    this.state("disconnected", err);
    if (this.retired || shuttingDown) return;
    // The guide's onclose: one manual start() after a delay (Close without allowReconnect, or
    // the automatic schedule exhausted).
    const delay = is("reconnect-after-close") && !exhausted ? 0 : CONFIG.manualRestartMs;
    log(`${this.spec.path} closed (${errorText(err) ?? "no error"}); manual restart in ${delay} ms`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.retired && !shuttingDown) this.start();
    }, delay);
  }

  // No connection to be had: `auto` tasks move to polling (the guide's fallback).
  lostForGood(err) {
    const waiting = [...this.tasks.values()];
    if (waiting.length === 0 || this.retired || shuttingDown) return;
    const moved = [];
    for (const task of waiting) {
      if (task.via === "auto" && !is("no-fallback")) {
        startPolling(task);
        moved.push(task.id);
      }
    }
    const stuck = waiting.length - moved.length;
    report(`cannot connect ${this.spec.path}: ${errorText(err)}` +
      (moved.length ? `; polling ${moved.length} task(s)` : "") +
      (stuck ? `; ${stuck} task(s) wait for the hub` : ""));
  }

  onEvent(kind, taskId, value) {
    if (is("slow-handling")) {
      slowChain = slowChain.then(() => sleep(SLOW_HANDLING_MS)).then(() => this.handle(kind, taskId, value));
      return;
    }
    this.handle(kind, taskId, value);
  }

  handle(kind, taskId, value) {
    // reports-completion-twice: a finished task's events are still handled (the bug).
    const task = this.tasks.get(taskId)
      ?? (is("reports-completion-twice") ? finishedTasks.get(taskId) : undefined);
    if (!task) return;
    if (kind === "progress") reportProgress(task, value, "event");
    else if (kind === "completed") {
      reportOutcome(task, { obs: "completed", task_id: taskId, result: value ?? null });
    }
    else reportOutcome(task, { obs: "failed", task_id: taskId, error: value ?? null });
  }

  // Out of the pool (evicted or shutting down): stop, and send its tasks elsewhere.
  async retire() {
    this.retired = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = null;
    for (const task of [...this.tasks.values()]) {
      if (!shuttingDown) {
        report(`${this.spec.path} connection evicted from the pool; polling ${task.id}`);
        startPolling(task);
      }
    }
    try {
      await this.connection.stop();
    } catch (err) {
      log(`stop of ${this.spec.path}: ${errorText(err)}`);
    }
  }
}

// One connection per hub, at most maxConnections (the guide's pool: the oldest goes).
const pool = new Map(); // pool key -> HubClient, oldest first

function hubFor(task) {
  const key = is("connection-per-task") ? `${task.kind}:${task.id}` : task.kind;
  let hub = pool.get(key);
  if (hub) {
    pool.delete(key); // most recently used last
  } else {
    const evicted = [];
    while (!is("connection-per-task") && pool.size >= CONFIG.maxConnections) {
      const [oldestKey, oldest] = pool.entries().next().value;
      pool.delete(oldestKey);
      evicted.push(oldest.retire());
    }
    hub = new HubClient(task.kind, key, Promise.all(evicted));
  }
  pool.set(key, hub);
  return hub;
}

// ---------------------------------------------------------------- commands

function track(cmd) {
  const { task_id: id } = cmd;
  const kind = cmd.kind ?? "image";
  const via = cmd.via ?? "auto";
  if (typeof id !== "string" || id === "") return report("track: task_id must be a non-empty string");
  if (!Object.hasOwn(HUBS, kind)) {
    return report(`track: kind must be image or video, not ${JSON.stringify(kind)}`);
  }
  if (!["signalr", "polling", "auto"].includes(via)) {
    return report(`track: via must be signalr, polling or auto, not ${JSON.stringify(via)}`);
  }
  if (tasks.has(id)) return report(`track: ${id} is already tracked`);
  const task = new Task(id, kind, via);
  tasks.set(id, task);
  if (via === "polling") startPolling(task);
  else hubFor(task).follow(task);
}

function untrack(cmd) {
  const task = tasks.get(cmd.task_id);
  if (!task) return report(`untrack: ${JSON.stringify(cmd.task_id ?? null)} is not tracked`);
  task.ended = true;
  finish(task);
}

let stopping = null;

function shutdown(reason) {
  if (stopping) return stopping;
  shuttingDown = true;
  log(`shutting down (${reason})`);
  stopping = (async () => {
    for (const task of tasks.values()) {
      task.ended = true;
      task.wake();
    }
    const stops = Promise.all([...pool.values()].map((hub) => hub.retire()));
    await Promise.race([stops, sleep(STOP_LIMIT_MS)]);
    process.stdout.write("", () => process.exit(0));
  })();
  return stopping;
}

function handleLine(line) {
  const text = line.trim();
  if (text === "") return;
  let cmd;
  try {
    cmd = JSON.parse(text);
  } catch (err) {
    return report(`bad JSON: ${errorText(err)}`);
  }
  if (!cmd || typeof cmd !== "object" || Array.isArray(cmd)) return report("a command must be a JSON object");
  if (shuttingDown) return report(`shutting down; ignored ${JSON.stringify(cmd.cmd ?? null)}`);
  switch (cmd.cmd) {
    case "track":
      return track(cmd);
    case "untrack":
      return untrack(cmd);
    case "shutdown":
      return shutdown("shutdown");
    default:
      return report(`unknown command ${JSON.stringify(cmd.cmd ?? null)}`);
  }
}

// ---------------------------------------------------------------- main

process.on("uncaughtException", (err) => report(`uncaught exception: ${err?.stack ?? err}`));
process.on("unhandledRejection", (reason) => report(`unhandled rejection: ${reason?.stack ?? reason}`));
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
process.stdout.on("error", () => process.exit(0)); // the reader went away

emit({ obs: "ready", name: MUTANT ? `${NAME}/${MUTANT}` : NAME, roles: ROLES });
log(`knobs ${JSON.stringify({ ...CONFIG, key: undefined })}`);

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on("line", (line) => {
  try {
    handleLine(line);
  } catch (err) {
    report(`command failed: ${errorText(err)}`);
  }
});
rl.on("close", () => shutdown("stdin closed"));
