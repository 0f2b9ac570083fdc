#!/usr/bin/env node
// Reference webhook receiver in Node (plain `http`), with flag-selected mutants.
//
//   CONDUIT_WEBHOOK_SECRET=... CONDUIT_WEBHOOK_PORT=0 \
//     node contract_tests/receivers/node_receiver.mjs [--mutant NAME] [--list-mutants]
//
// Same behaviour as python_receiver.py: the raw body is read in full (2 MiB kept; more is drained
// and answered 413); another path 404; a method other than POST 405; a non-JSON Content-Type 415;
// `X-Conduit-Signature` must be one header of 64 hex digits whose bytes equal
// HMAC-SHA256(secret, raw body), compared with crypto.timingSafeEqual after a length check (else
// 401); the body must be strict UTF-8 JSON holding an object (else 400); a duplicate (same
// task_id, event_type, body timestamp and SHA-256 of the raw body) is answered 200 and not
// reported again; otherwise one `webhook` observation and 200 at once. Never a 5xx (the mutants
// that crash get the 500 an Express app's default error handler would give).
//
// Driver protocol: JSON Lines; `ready` with `webhook_url` on stdout, `{"cmd":"shutdown"}` (or stdin
// closing) on stdin stops it.

import crypto from 'node:crypto';
import http from 'node:http';
import readline from 'node:readline';

const MUTANTS = {
  'no-verification': 'W-REJECT',
  'reserialised': 'W-RAW-BODY',
  'bytes-eq': 'W-ACCEPT',
  'prefix-compare': 'W-REJECT',
  'crash-on-length': 'W-NO-CRASH',
  'accepts-missing-header': 'W-REJECT',
  'hardcoded-secret': 'W-ACCEPT',
  'slow-ack': 'W-FAST-ACK',
  'processes-duplicates': 'W-DUPLICATE',
  'crash-on-get': 'W-METHOD',
  'accepts-placeholder-secret': 'W-REJECT',
  'parses-before-verifying': 'W-NO-CRASH',
};
const WEBHOOK_PATH = '/webhooks/conduit';
const PLACEHOLDER_SECRET = 'your-webhook-secret';
// accepts-placeholder-secret: key rotation whose unset "previous" secret falls back to a default.
const PREVIOUS_SECRET_VARIABLE = 'CONDUIT_WEBHOOK_PREVIOUS_SECRET';
const PREVIOUS_SECRET_DEFAULT = 'changeme';
const SLOW_ACK_MS = 6000;
const MAX_BODY_BYTES = 2 * 1024 * 1024;
const DRAIN_LIMIT = 32 * 1024 * 1024;
const DEDUP_LIMIT = 10000;
const HEX64 = /^[0-9a-fA-F]{64}$/;

function parseArgs(argv) {
  const out = { mutant: null, list: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--mutant') {
      out.mutant = argv[i + 1] ?? '';
      i += 1;
    } else if (arg.startsWith('--mutant=')) {
      out.mutant = arg.slice('--mutant='.length);
    } else if (arg === '--list-mutants') {
      out.list = true;
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: node node_receiver.mjs [--mutant NAME] [--list-mutants]\n');
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${arg}\n`);
      process.exit(2);
    }
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
if (args.list) {
  for (const [name, rule] of Object.entries(MUTANTS)) process.stdout.write(`${name}\t${rule}\n`);
  process.exit(0);
}
if (args.mutant !== null && !Object.hasOwn(MUTANTS, args.mutant)) {
  process.stderr.write(`unknown mutant '${args.mutant}'; known mutants: ${Object.keys(MUTANTS).join(', ')}\n`);
  process.exit(2);
}
const mutant = args.mutant;
const secret = process.env.CONDUIT_WEBHOOK_SECRET;
if (!secret) {
  process.stderr.write('CONDUIT_WEBHOOK_SECRET must be set (the webhook signing secret)\n');
  process.exit(2);
}
const portText = (process.env.CONDUIT_WEBHOOK_PORT ?? '0').trim() || '0';
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`CONDUIT_WEBHOOK_PORT is not a port number: ${portText}\n`);
  process.exit(2);
}

function emit(observation) {
  process.stdout.write(`${JSON.stringify(observation)}\n`);
}

function report(payload, accepted, reason) {
  const fields = payload !== null && typeof payload === 'object' && !Array.isArray(payload) ? payload : {};
  const observation = {
    obs: 'webhook',
    task_id: fields.task_id ?? null,
    event_type: fields.event_type ?? null,
    accepted,
  };
  if (reason) observation.reason = reason;
  emit(observation);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Strict: UTF-8 only, a BOM is not skipped (JSON.parse then refuses it). Throws on anything else.
function parseJson(raw) {
  return JSON.parse(utf8.decode(raw));
}

function claimed(raw) {
  try {
    return parseJson(raw);
  } catch {
    return null;
  }
}

function isJsonMediaType(header) {
  const type = String(header ?? '').split(';', 1)[0].trim().toLowerCase();
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'));
}

function hmacOf(key, bytes) {
  return crypto.createHmac('sha256', key).update(bytes);
}

// null when the delivery is signed correctly, else why not.
function signatureProblem(raw, header) {
  if (mutant === 'no-verification') return null;
  if (mutant === 'accepts-missing-header' && header === undefined) return null;
  if (mutant === 'crash-on-length') {
    // The guide's example: throws TypeError on a missing header and RangeError on a wrong length.
    const expected = hmacOf(secret, raw).digest('hex');
    return crypto.timingSafeEqual(Buffer.from(header), Buffer.from(expected)) ? null : 'signature mismatch';
  }
  if (mutant === 'bytes-eq') {
    // eslint-disable-next-line eqeqeq
    return hmacOf(secret, raw).digest() == header ? null : 'signature mismatch';
  }
  if (mutant === 'prefix-compare') {
    const expected = hmacOf(secret, raw).digest('hex');
    return header !== undefined && expected.startsWith(header) ? null : 'signature mismatch';
  }
  if (header === undefined) return 'missing signature header';
  if (header === '') return 'empty signature header';
  // Several headers arrive joined with ', ', so they fail here too.
  if (!HEX64.test(header)) return 'malformed signature header (want 64 hex digits)';
  let signed = raw;
  if (mutant === 'reserialised') {
    try {
      signed = Buffer.from(JSON.stringify(parseJson(raw)), 'utf8');
    } catch {
      return 'signature mismatch';
    }
  }
  const keys = [mutant === 'hardcoded-secret' ? PLACEHOLDER_SECRET : secret];
  if (mutant === 'accepts-placeholder-secret') {
    keys.push(process.env[PREVIOUS_SECRET_VARIABLE] ?? PREVIOUS_SECRET_DEFAULT);
  }
  const given = Buffer.from(header, 'hex');
  for (const key of keys) {
    const expected = hmacOf(key, signed).digest();
    if (given.length !== expected.length) return 'signature length mismatch';
    if (crypto.timingSafeEqual(given, expected)) return null;
  }
  return 'signature mismatch';
}

// The raw body; null when it is over MAX_BODY_BYTES (drained up to DRAIN_LIMIT, then the socket
// is destroyed).
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > DRAIN_LIMIT) {
        req.destroy();
        reject(new Error('body over the drain limit'));
        return;
      }
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => resolve(size <= MAX_BODY_BYTES ? Buffer.concat(chunks) : null));
    req.on('error', reject);
  });
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const seen = new Map();
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function handle(req, res) {
  const raw = await readBody(req);
  const jsonType = isJsonMediaType(req.headers['content-type']);
  if (mutant === 'crash-on-get' && (req.method !== 'POST' || !jsonType)) {
    // Reads the event before checking what came: a GET's empty body or a text body throws.
    const { event_type: eventType } = JSON.parse((raw ?? Buffer.alloc(0)).toString('utf8'));
    void eventType;
  }
  const path = (req.url ?? '').split('?', 1)[0];
  if (path !== WEBHOOK_PATH) return send(res, 404, { error: 'not found' });
  if (req.method !== 'POST') return send(res, 405, { error: 'method not allowed' }, { Allow: 'POST' });
  if (raw === null) {
    report(null, false, 'body too large');
    return send(res, 413, { error: 'body too large' });
  }
  if (!jsonType) {
    report(null, false, 'not JSON');
    return send(res, 415, { error: 'Content-Type must be application/json' });
  }
  if (mutant === 'parses-before-verifying') {
    // Looks at the event first: a body that is not JSON throws -> 500.
    const { event_type: eventType } = JSON.parse(raw.toString('utf8'));
    void eventType;
  }
  const problem = signatureProblem(raw, req.headers['x-conduit-signature']);
  if (problem !== null) {
    report(claimed(raw), false, problem);
    return send(res, 401, { error: 'invalid signature' });
  }
  let payload;
  try {
    payload = parseJson(raw);
  } catch (err) {
    report(null, false, `invalid JSON: ${err.message}`);
    return send(res, 400, { error: 'invalid JSON' });
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    report(null, false, 'not a JSON object');
    return send(res, 400, { error: 'body must be a JSON object' });
  }
  const digest = crypto.createHash('sha256').update(raw).digest('hex');
  const key = JSON.stringify([String(payload.task_id), String(payload.event_type), String(payload.timestamp),
    digest]);
  if (seen.has(key) && mutant !== 'processes-duplicates') {
    seen.delete(key);
    seen.set(key, true);
    return send(res, 200, { received: true, duplicate: true });
  }
  seen.set(key, true);
  while (seen.size > DEDUP_LIMIT) seen.delete(seen.keys().next().value);
  if (mutant === 'slow-ack') await sleep(SLOW_ACK_MS); // "processing" before answering
  report(payload, true);
  return send(res, 200, { received: true });
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    process.stderr.write(`handler error: ${err && err.stack ? err.stack : err}\n`);
    if (!res.headersSent) {
      send(res, 500, { error: 'Internal Server Error' });
    } else {
      res.destroy();
    }
  });
});
server.on('clientError', (err, socket) => {
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});

let stopping = false;
function shutdown() {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}

server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  emit({
    obs: 'ready',
    name: `node-reference-receiver${mutant ? `/${mutant}` : ''}`,
    roles: ['webhook'],
    webhook_url: `http://127.0.0.1:${bound}${WEBHOOK_PATH}`,
    mutant,
  });
});
server.on('error', (err) => {
  process.stderr.write(`server error: ${err.message}\n`);
  process.exit(1);
});

const commands = readline.createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const text = line.trim();
  if (!text) return;
  let cmd = null;
  try {
    const parsed = JSON.parse(text);
    cmd = parsed !== null && typeof parsed === 'object' ? parsed.cmd : null;
  } catch {
    cmd = null;
  }
  if (cmd === 'shutdown') {
    shutdown();
  } else if (cmd === 'track' || cmd === 'untrack') {
    emit({ obs: 'error', message: `a webhook receiver does not track tasks: '${cmd}' ignored` });
  } else {
    emit({ obs: 'error', message: `unknown command ignored: ${text.slice(0, 200)}` });
  }
});
commands.on('close', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
