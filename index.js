'use strict'

// The public JavaScript API. The locking itself happens in the native core (binding.js loads
// it); this file adds what only JavaScript can do: typed errors with a stable `code`, argument
// type checks, AbortSignal, AsyncLocalStorage reentrancy and Symbol.asyncDispose.

const { AsyncLocalStorage } = require('node:async_hooks')
const { EventEmitter } = require('node:events')
const { inspect } = require('node:util')
const { NativeClient } = require('./binding.js')
const { createMetrics } = require('./lib/metrics.js')

const CODE_PREFIX = /^(ERR_RELOCK_[A-Z_]+|ABORT_ERR): ([\s\S]*)$/

class RelockError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = code === 'ABORT_ERR' ? 'AbortError' : 'RelockError'
    this.code = code
  }
}

function toRelockError(error) {
  if (error instanceof RelockError) return error
  const match = error && typeof error.message === 'string' ? CODE_PREFIX.exec(error.message) : null
  if (match) return new RelockError(match[1], match[2])
  return new RelockError('ERR_RELOCK_INTERNAL', `unexpected failure: ${error && error.message}`, { cause: error })
}

// A failure that the native core handed over as data: `{ code, message, cause? }`.
function errorFromRecord({ code, message, cause }) {
  return new RelockError(code, message, cause ? { cause: errorFromRecord(cause) } : undefined)
}

function invalid(message) {
  return new RelockError('ERR_RELOCK_INVALID_ARGUMENT', message)
}

function describe(value) {
  if (value === null) return 'null'
  if (typeof value === 'string') return `string ${JSON.stringify(value.slice(0, 40))}`
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${typeof value} ${String(value)}`
  return typeof value
}

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
  for (const [field, type] of Object.entries(fields)) {
    const given = value[field]
    if (type !== null && given !== undefined && typeof given !== type) {
      throw invalid(`${name}.${field} must be a ${type}, got ${describe(given)}`)
    }
  }
  return value
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

const WAIT_OUTCOMES = { ERR_RELOCK_WAIT_TIMEOUT: 'timeout', ABORT_ERR: 'aborted', ERR_RELOCK_CLOSED: 'closed' }

function abortError(signal) {
  return new RelockError('ABORT_ERR', 'the wait for the lock was aborted', { cause: signal.reason })
}

// The locks held by the current async call chain: Map<Redlock, Map<key, Hold>>. A chain that
// holds a key re-enters it at once instead of waiting for itself.
const heldInChain = new AsyncLocalStorage()

// One native lock shared by the re-entrant handles of one async call chain; released when the
// last handle is, or when the outermost `using` that took it ends, whatever handles are left.
class Hold {
  constructor(native, notify, release) {
    this.native = native
    this.notify = notify
    this.release = release
    this.count = 1
    // 'held', then 'releasing' once its release began, then 'ended'.
    this.state = 'held'
    this.controller = new AbortController()
    this.acquiredAt = performance.now()
  }

  // Releases the native lock once, however many handles still count on it. Handles that still
  // count on it (a nested using still running, an inner acquire never released) learn it from
  // the signal: their code runs on without the lock.
  async end() {
    if (this.state !== 'held') return false
    this.state = 'releasing'
    const others = this.count - 1
    if (others > 0) {
      this.controller.abort(new RelockError('ERR_RELOCK_LOCK_LOST', `'${this.native.key}' was released by its outermost using while ${others} nested hold${others > 1 ? 's were' : ' was'} still active`))
    }
    try {
      const released = await this.release()
      if (released) this.notify('released', { key: this.native.key, fence: this.native.fence, heldMs: performance.now() - this.acquiredAt, closed: false })
      return released
    } finally {
      this.state = 'ended'
    }
  }

  // Why this hold cannot be re-entered, or null if it can.
  refusal(key) {
    if (this.state !== 'held') {
      return new RelockError('ERR_RELOCK_LOCK_LOST', `'${key}' cannot be re-entered: the enclosing using ${this.state === 'releasing' ? 'is releasing it' : 'has released it'}`)
    }
    const lost = this.native.lostReason
    if (lost) return toRelockError(new Error(lost))
    if (!this.native.isValid()) return new RelockError('ERR_RELOCK_LOCK_LOST', `'${key}' cannot be re-entered: its lease ran out`)
    return null
  }
}

// The Hold behind a Lock, for `using` to record in the async call chain.
let lockHold

class Lock {
  #hold
  #released = false

  static {
    lockHold = (lock) => lock.#hold
  }

  constructor(hold) {
    this.#hold = hold
  }

  get key() {
    return this.#hold.native.key
  }

  get token() {
    return this.#hold.native.token
  }

  /** Fencing number: strictly greater than every fence handed out before for this key. */
  get fence() {
    return this.#hold.native.fence
  }

  /** Aborts, with a RelockError as its reason, when the lock is lost. */
  get signal() {
    return this.#hold.controller.signal
  }

  /** True while held and within its lease; answered from native state, no round trip. */
  isValid() {
    return !this.#released && this.#hold.state === 'held' && this.#hold.native.isValid()
  }

  /** Milliseconds left on the lease (0 once released or lost). */
  remainingMs() {
    return this.isValid() ? this.#hold.native.remainingMs() : 0
  }

  extend(ttl) {
    return call(async () => {
      expectNumber('ttl', ttl)
      if (this.#released || this.#hold.state !== 'held') throw new RelockError('ERR_RELOCK_LOCK_LOST', `the lock on '${this.key}' was already released`)
      await this.#hold.native.extend(ttl)
      this.#hold.notify('extended', { key: this.key, fence: this.fence, ttl })
    })
  }

  /**
   * Gives the hold up; the lock itself is released when the last hold of the call chain is.
   * Resolves true when this call released it, false when it had been released before; rejects
   * with ERR_RELOCK_LOCK_LOST when the lock had been lost meanwhile.
   */
  release() {
    return call(async () => {
      if (this.#released) return false
      this.#released = true
      const hold = this.#hold
      if (hold.state !== 'held') return false // its using scope released it
      if (--hold.count > 0) {
        // Another handle still counts on the lock: it stays held, unless it was lost meanwhile.
        const lost = hold.native.lostReason
        if (lost) throw toRelockError(new Error(lost))
        return true
      }
      return hold.end()
    })
  }

  async [Symbol.asyncDispose]() {
    await this.release()
  }

  [inspect.custom]() {
    return `Lock { key: ${inspect(this.key)}, fence: ${this.fence}, valid: ${this.isValid()} }`
  }
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

// Runs a native call so that bad input and native failures always come back as a rejected
// promise carrying a RelockError, never as a synchronous throw.
async function call(fn) {
  try {
    return await fn()
  } catch (error) {
    throw toRelockError(error)
  }
}

// Clients with calls in flight stay reachable until those calls settle, although the native
// side refers to them only weakly (a strong reference would keep every client alive forever).
const clientsWithCallsInFlight = new Set()

class Redlock extends EventEmitter {
  #native
  #holds = new Set()
  #metrics = null
  #calls = new Map()
  #nextCallId = 0

  /**
   * @param {string | string[]} urls one Redis URL, or several independent masters (Redlock)
   * @param {object} [options]
   */
  constructor(urls, options) {
    super()
    const list = typeof urls === 'string' ? [urls] : urls
    if (!Array.isArray(list) || list.length === 0 || !list.every((url) => typeof url === 'string')) {
      throw invalid(`urls must be a Redis URL string or a non-empty array of them, got ${describe(urls)}`)
    }
    const { logger, metrics, ...nativeOptions } = nativeClientOptions(options) ?? {}
    if (expectOptions('options.metrics', metrics, METRICS_OPTIONS)) this.#metrics = createMetrics(metrics, invalid)
    const self = new WeakRef(this)
    try {
      this.#native = new NativeClient(list, nativeOptions, () => self.deref()?.#settleCompleted(), (coded) => self.deref()?.#noticed(coded), logSink(logger))
    } catch (error) {
      throw toRelockError(error)
    }
  }

  // Emits an observability event; a listener that throws cannot break the lock's own work.
  #notify = (event, detail) => {
    if (this.listenerCount(event) === 0) return
    try {
      this.emit(event, detail)
    } catch (error) {
      process.emitWarning(`relock: a '${event}' listener threw: ${error && error.message}`)
    }
  }

  // A problem that did not fail a call: a lock copied to fewer replicas than asked, under the
  // 'warn' policy. Listeners of 'replication' get it; without one it becomes a process warning.
  #noticed(coded) {
    const error = toRelockError(new Error(coded))
    if (this.listenerCount('replication') > 0) this.#notify('replication', { error })
    else process.emitWarning(`relock: ${error.message}`, 'RelockReplicationWarning')
  }

  // Starts a native call whose result comes back through #settleCompleted, in a batch with the
  // other results that finished meanwhile.
  // `args()` checks and returns the arguments: bad ones reject the promise, like native failures.
  // `started` receives what the native method returned (the cancel handle of an acquire).
  #start(method, args, started) {
    return new Promise((resolve, reject) => {
      const id = (this.#nextCallId = (this.#nextCallId + 1) >>> 0)
      let handle
      try {
        handle = this.#native[method](id, ...args())
      } catch (error) {
        reject(toRelockError(error))
        return
      }
      if (this.#calls.size === 0) clientsWithCallsInFlight.add(this)
      this.#calls.set(id, { resolve, reject })
      started?.(handle)
    })
  }

  #settleCompleted() {
    const records = this.#native.takeCompleted()
    for (let at = 0; at < records.length; at += 4) {
      const id = records[at]
      const call = this.#calls.get(id)
      if (!call) continue // settled by close() already
      this.#calls.delete(id)
      if (!records[at + 1]) call.reject(errorFromRecord(records[at + 2]))
      else if (records[at + 3] !== undefined) call.resolve({ token: records[at + 2], validity: records[at + 3] })
      else call.resolve(records[at + 2])
    }
    if (this.#calls.size === 0) clientsWithCallsInFlight.delete(this)
  }

  // A hold ends once: released, lost or closed.
  #endHold(hold, outcome) {
    if (!this.#holds.delete(hold)) return
    this.#metrics?.holdEnded(hold.native.key, outcome, performance.now() - hold.acquiredAt)
  }

  /** Redis hosts by address, without credentials. */
  get hosts() {
    return this.#native.hostLabels
  }

  get closed() {
    return this.#native.closed
  }

  lock(key, ttl, options) {
    return this.#start('lock', () => [expectString('key', key), expectNumber('ttl', ttl), expectOptions('options', options, LOCK_OPTIONS)])
  }

  lockWithValidity(key, ttl, options) {
    return this.#start('lockWithValidity', () => [expectString('key', key), expectNumber('ttl', ttl), expectOptions('options', options, LOCK_OPTIONS)])
  }

  extend(key, token, ttl) {
    return this.#start('extend', () => [expectString('key', key), expectString('token', token), expectNumber('ttl', ttl)])
  }

  unlock(key, token) {
    return this.#start('unlock', () => [expectString('key', key), expectString('token', token)])
  }

  /**
   * Waits until `key` is free and takes it with a lease that the native watchdog renews while
   * it is held. Resolves to a Lock handle.
   */
  acquire(key, options) {
    return call(() => this.#acquire(key, expectOptions('options', options, ACQUIRE_OPTIONS)))
  }

  /**
   * Makes exactly one attempt: resolves to a Lock handle, or to null when the lock is held.
   * Takes the options of `acquire` but `waitTimeout`.
   */
  tryAcquire(key, options) {
    return call(async () => {
      const given = expectOptions('options', options, TRY_ACQUIRE_OPTIONS)
      try {
        return await this.#acquire(key, { ...given, waitTimeout: 0 })
      } catch (error) {
        if (error.code !== 'ERR_RELOCK_WAIT_TIMEOUT') throw error
        if (error.cause) throw error.cause
        return null
      }
    })
  }

  #acquire(key, options) {
    return call(async () => {
      expectString('key', key)
      const { signal, onLost, ...config } = options ?? {}
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('options.signal must be an AbortSignal')
      const reentered = heldInChain.getStore()?.get(this)?.get(key)
      if (reentered) {
        const refusal = reentered.refusal(key)
        if (refusal) throw refusal
        reentered.count++
        return new Lock(reentered)
      }
      if (signal?.aborted) throw abortError(signal)

      let hold = null
      let request = null
      const waitStarted = performance.now()
      const onLostNative = (coded) => {
        const reason = toRelockError(new Error(coded))
        if (hold) {
          this.#endHold(hold, 'lost')
          hold.controller.abort(reason)
          this.#notify('lost', { key, fence: hold.native.fence, error: reason })
        }
        if (onLost) {
          try {
            onLost(reason)
          } catch (error) {
            process.emitWarning(`relock: the onLost callback threw: ${error && error.message}`)
          }
        }
      }
      const cancel = () => request?.cancel()
      signal?.addEventListener('abort', cancel, { once: true })
      this.#metrics?.waitStarted()
      try {
        const native = await this.#start('acquire', () => [key, config, onLostNative], (handle) => { request = handle })
        this.#metrics?.waitEnded(key, 'acquired', performance.now() - waitStarted)
        hold = new Hold(native, this.#notify, () => {
          this.#endHold(hold, 'released')
          return this.#start('release', () => [native])
        })
        this.#holds.add(hold)
        this.#notify('acquired', { key, fence: native.fence, waitedMs: performance.now() - waitStarted })
        const lost = native.lostReason
        if (lost) hold.controller.abort(toRelockError(new Error(lost)))
        return new Lock(hold)
      } catch (error) {
        const relockError = toRelockError(error)
        if (!hold) this.#metrics?.waitEnded(key, WAIT_OUTCOMES[relockError.code] ?? 'failed', performance.now() - waitStarted)
        if (relockError.code === 'ERR_RELOCK_WAIT_TIMEOUT' && config.waitTimeout !== 0) this.#notify('timeout', { key, waitedMs: performance.now() - waitStarted })
        if (relockError.code === 'ABORT_ERR' && signal) throw abortError(signal)
        throw relockError
      } finally {
        signal?.removeEventListener('abort', cancel)
      }
    })
  }

  /**
   * Runs `fn(lock)` while holding `key`, and releases it afterwards. A nested `using` or
   * `acquire` of the same key inside `fn` (in the same async call chain) re-enters at once.
   * The outermost `using` of a key ends its hold when `fn` settles, whatever handles `fn` left
   * unreleased; a nested one gives its share back, and rejects if the lock was lost.
   */
  async using(key, options, fn) {
    if (typeof options === 'function') [options, fn] = [undefined, options]
    if (typeof fn !== 'function') throw invalid(`fn must be a function, got ${describe(fn)}`)
    const outer = heldInChain.getStore()
    const outermost = !outer?.get(this)?.has(key)
    const lock = await this.acquire(key, options)
    const hold = lockHold(lock)
    const chain = new Map(outer)
    const forThisClient = new Map(outer?.get(this))
    forThisClient.set(key, hold)
    chain.set(this, forThisClient)
    // A lost lock makes the native release reject with its reason; a nested using whose hold
    // its outermost using ended meanwhile rejects with the reason its signal got.
    const finish = outermost
      ? () => call(() => hold.end())
      : () => (hold.state !== 'held' && hold.controller.signal.aborted ? Promise.reject(hold.controller.signal.reason) : lock.release())
    let result
    try {
      result = await heldInChain.run(chain, () => fn(lock))
    } catch (error) {
      await finish().catch(() => {})
      throw error
    }
    await finish()
    return result
  }

  /** Counters of what this client's locks did since it was created. */
  stats() {
    return this.#native.stats()
  }

  /** The state of `key` on every host: holder, remaining ttl, fence, fair queue. */
  inspect(key) {
    return call(async () => {
      expectString('key', key)
      const states = await this.#native.inspect(key)
      // What is absent is null, as the types say (N-API leaves a missing value undefined).
      return states.map((state) => ({
        host: state.host,
        holder: state.holder ?? null,
        ttl: state.ttl ?? null,
        fence: state.fence ?? null,
        waiters: state.waiters.map((waiter) => ({ token: waiter.token, expiresIn: waiter.expiresIn ?? null, ttl: waiter.ttl ?? null })),
        foreign: state.foreign,
        error: state.error ? errorFromRecord(state.error) : null,
      }))
    })
  }

  /**
   * Lock keys matching a glob pattern, found with SCAN (never KEYS). The array also carries
   * `failedHosts`: the hosts that could not be asked, each with its error.
   */
  list(pattern, options) {
    return call(async () => {
      expectString('pattern', pattern)
      const listing = await this.#native.list(pattern, expectOptions('options', options, LIST_OPTIONS)?.limit)
      const keys = listing.keys
      Object.defineProperty(keys, 'failedHosts', { value: listing.failedHosts.map((failure) => ({ host: failure.host, error: errorFromRecord(failure) })), enumerable: false })
      return keys
    })
  }

  /** Releases `key` whoever holds it, as its holder would. For operators. */
  forceRelease(key) {
    return call(() => {
      expectString('key', key)
      return this.#native.forceRelease(key)
    })
  }

  async close() {
    const closing = this.#native.close()
    const closed = new RelockError('ERR_RELOCK_CLOSED', 'the Redlock client is closed')
    for (const call of this.#calls.values()) call.reject(closed)
    this.#calls.clear()
    clientsWithCallsInFlight.delete(this)
    await closing
    // The native side released these locks. Closing is not losing: their signals abort with
    // ERR_RELOCK_CLOSED, onLost is not called, and they are reported as released.
    for (const hold of [...this.#holds]) {
      this.#endHold(hold, 'closed')
      const { key, fence } = hold.native
      hold.state = 'ended'
      hold.controller.abort(new RelockError('ERR_RELOCK_CLOSED', `the client was closed while holding '${key}'`))
      this.#notify('released', { key, fence, heldMs: performance.now() - hold.acquiredAt, closed: true })
    }
    this.#holds.clear()
  }

  [inspect.custom]() {
    return `Redlock { hosts: ${inspect(this.hosts)}, closed: ${this.closed} }`
  }
}

// `default` too: node-redlock users write `import Redlock from 'relock'`.
module.exports = { Redlock, RelockError, Lock, default: Redlock }
