'use strict'

// The shape of every options object: the keys each one knows and the JavaScript type of each.
// Values are checked, and defaults applied, once, in the native core; here an unknown key is
// refused (a misspelt option would otherwise be ignored) and a wrong type named.

const { invalid, describe } = require('./errors.js')

function expectString(name, value) {
  if (typeof value !== 'string') throw invalid(`${name} must be a string, got ${describe(value)}`)
  return value
}

function expectNumber(name, value) {
  if (typeof value !== 'number') throw invalid(`${name} must be a number of milliseconds, got ${describe(value)}`)
  return value
}

// `fields` maps each known option to the `typeof` it must have, or to null when its own check
// comes later. Unknown keys are refused: a misspelt option would otherwise be silently ignored.
function expectOptions(name, value, fields) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${name} must be an object, got ${describe(value)}`)
  for (const field of Object.keys(value)) {
    if (!Object.hasOwn(fields, field)) {
      const closest = closestName(field, Object.keys(fields))
      const hint = closest ? `; did you mean ${closest}?` : ''
      throw invalid(`${name}.${field} is not an option${hint} (known: ${Object.keys(fields).join(', ')})`)
    }
  }
  for (const [field, type] of entriesOf(fields)) {
    const given = value[field]
    if (type !== null && given !== undefined && typeof given !== type) {
      throw invalid(`${name}.${field} must be a ${type}, got ${describe(given)}`)
    }
  }
  return value
}

// The [field, type] pairs of an options shape, listed once per shape: options are checked on
// every call.
const shapeEntries = new WeakMap()
function entriesOf(fields) {
  let entries = shapeEntries.get(fields)
  if (!entries) shapeEntries.set(fields, (entries = Object.entries(fields)))
  return entries
}

// The known name nearest to a misspelt one (case-insensitive edit distance), if any is near.
function closestName(given, known) {
  let best = null
  let bestDistance = Infinity
  for (const name of known) {
    const distance = editDistance(given.toLowerCase(), name.toLowerCase())
    if (distance < bestDistance) [best, bestDistance] = [name, distance]
  }
  return bestDistance <= Math.max(2, Math.floor(given.length / 3)) ? best : null
}

function editDistance(a, b) {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

const CLIENT_OPTIONS = {
  connectTimeout: 'number',
  commandTimeout: 'number',
  driftFactor: 'number',
  retryCount: 'number',
  retryDelay: 'number',
  retryJitter: 'number',
  retryTimeout: 'number',
  username: 'string',
  password: 'string',
  tls: 'object',
  replicaAck: 'object',
  sentinel: 'object',
  cluster: 'boolean',
  prefix: 'string',
  logger: 'object',
  metrics: 'object',
}
const METRICS_OPTIONS = { meter: null, keyGroup: 'function' }
const LOG_LEVELS = ['debug', 'info', 'warn', 'error']
const REPLICA_ACK_OPTIONS = { replicas: 'number', timeout: 'number', policy: 'string' }
const TLS_OPTIONS = { ca: null, cert: null, key: null, dangerouslyAcceptAnyCertificate: 'boolean' }
const SENTINEL_OPTIONS = { name: null }
const LIST_OPTIONS = { limit: 'number' }
const LOCK_OPTIONS = { retryCount: 'number', retryDelay: 'number', retryJitter: 'number', retryTimeout: 'number' }
const ACQUIRE_OPTIONS = {
  ttl: 'number',
  waitTimeout: 'number',
  fair: 'boolean',
  watchdog: 'boolean',
  maxHold: 'number',
  signal: 'object',
  onLost: 'function',
}
const { waitTimeout: _, ...TRY_ACQUIRE_OPTIONS } = ACQUIRE_OPTIONS
const SEMAPHORE_OPTIONS = { permits: 'number' }
const PERMITS_OPTIONS = { ...ACQUIRE_OPTIONS, permits: 'number' }

// The keys of a multi-key call: an array of strings (their count and duplicates are checked
// by the core).
function expectKeys(keys) {
  if (!keys.every((key) => typeof key === 'string')) throw invalid(`keys must be an array of strings, got ${keys.map(describe).join(', ')}`)
  return keys
}

// PEM material may come as a string or as the Buffer that fs.readFileSync returns; a file path
// in its place is refused now rather than failing at the first connection.
function pem(name, value) {
  if (value === undefined) return value
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) {
    throw invalid(`options.tls.${name} must be a PEM string or Buffer, got ${describe(value)}`)
  }
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : value
  if (!text.includes('-----BEGIN')) {
    throw invalid(`options.tls.${name} holds no PEM block (-----BEGIN …); if it is a file path, pass the file's contents: fs.readFileSync(path)`)
  }
  return text
}

// Where log lines go: the `logger` option (console, pino, winston and the like: an object with
// debug/info/warn/error methods, any of them), or stderr when DEBUG names relock.
function logSink(logger) {
  if (logger !== undefined && logger !== null) {
    const missing = LOG_LEVELS.every((level) => typeof logger[level] !== 'function')
    if (missing) throw invalid('options.logger must have at least one of the methods debug, info, warn, error')
    return (coded) => {
      const at = coded.indexOf(' ')
      const level = coded.slice(0, at)
      if (typeof logger[level] !== 'function') return
      try {
        logger[level](`relock: ${coded.slice(at + 1)}`)
      } catch {}
    }
  }
  if (/(^|[\s,])(relock|relock:\*|\*)($|[\s,])/.test(process.env.DEBUG ?? '')) {
    return (coded) => process.stderr.write(`relock ${coded}\n`)
  }
  return null
}

function nativeClientOptions(options) {
  if (!expectOptions('options', options, CLIENT_OPTIONS)) return undefined
  expectOptions('options.replicaAck', options.replicaAck, REPLICA_ACK_OPTIONS)
  expectOptions('options.sentinel', options.sentinel, SENTINEL_OPTIONS)
  if (options.sentinel != null && typeof options.sentinel.name !== 'string') {
    throw invalid(`options.sentinel.name must be the master's name, got ${describe(options.sentinel.name)}`)
  }
  const { tls } = options
  if (tls === undefined || tls === null) return options
  expectOptions('options.tls', tls, TLS_OPTIONS)
  if (tls.dangerouslyAcceptAnyCertificate) {
    process.emitWarning('relock: TLS certificate checks are off (tls.dangerouslyAcceptAnyCertificate): the connection can be intercepted', 'SecurityWarning')
  }
  return { ...options, tls: { ca: pem('ca', tls.ca), cert: pem('cert', tls.cert), key: pem('key', tls.key), dangerouslyAcceptAnyCertificate: tls.dangerouslyAcceptAnyCertificate } }
}

module.exports = {
  expectString,
  expectNumber,
  expectOptions,
  nativeClientOptions,
  logSink,
  METRICS_OPTIONS,
  LIST_OPTIONS,
  LOCK_OPTIONS,
  ACQUIRE_OPTIONS,
  TRY_ACQUIRE_OPTIONS,
  SEMAPHORE_OPTIONS,
  PERMITS_OPTIONS,
  expectKeys,
}
