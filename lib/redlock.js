'use strict'

// The client: the calls of the public API, each handed to the native core and settled from its
// batch of completions.

const { EventEmitter } = require('node:events')
const { inspect } = require('node:util')
const { NativeClient } = require('../binding.js')
const { createMetrics } = require('./metrics.js')
const { RelockError, toRelockError, errorFromRecord, invalid, describe, abortError, call, rejectingOnThrow } = require('./errors.js')
const { expectString, expectNumber, expectOptions, nativeClientOptions, logSink, METRICS_OPTIONS, LIST_OPTIONS, LOCK_OPTIONS, ACQUIRE_OPTIONS, TRY_ACQUIRE_OPTIONS, SEMAPHORE_OPTIONS, PERMITS_OPTIONS, expectKeys } = require('./options.js')
const { Hold, Lock, lockHold, heldInChain } = require('./lock.js')
const { ReadWriteLock, ReadWriteHandle, Semaphore, PermitHandle } = require('./primitives.js')
const { DirectDriver } = require('./direct.js')

const NOT_STARTED = Symbol('not started here')
// The `ok` of a record of takeCompleted() that reports a lost lock.
const LOST = 2
const WAIT_OUTCOMES = { ERR_RELOCK_WAIT_TIMEOUT: 'timeout', ABORT_ERR: 'aborted', ERR_RELOCK_CLOSED: 'closed' }

// Clients with calls in flight or locks held stay reachable until those calls settle and those
// holds end (so that a loss still reaches onLost when nothing else refers to the client), although
// the native side refers to them only weakly (a strong reference would keep every client alive
// forever).
const clientsInUse = new Set()

const newLock = (hold) => new Lock(hold)

// What the native side of an acquire reads (of any primitive: `permits` is the semaphore's).
function nativeConfig({ ttl, waitTimeout, fair, watchdog, maxHold, permits }) {
  return { ttl, waitTimeout, fair, watchdog, maxHold, permits }
}

class Redlock extends EventEmitter {
  #native
  #holds = new Set()
  #metrics = null
  #calls = new Map()
  #nextCallId = 0
  // What to do when the lock an acquire took is lost, by the loss id that acquire passed.
  #lossHandlers = new Map()
  #nextLostId = 0
  // lock, unlock and extend on Node's own sockets, when every host allows it.
  #direct = null

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
      this.#native = new NativeClient(list, nativeOptions, () => self.deref()?.#settleCompleted(), (info) => self.deref()?.#noticed(info), logSink(logger))
    } catch (error) {
      throw toRelockError(error)
    }
    const direct = this.#native.direct()
    if (direct) this.#direct = new DirectDriver(direct, direct.connectTimeout, (id, ok, value, extra) => self.deref()?.#settle(id, ok, value, extra))
  }

  // Emits an observability event; a listener that throws cannot break the lock's own work.
  // `detail()` makes the event's object, only when someone listens.
  #notify = (event, detail) => {
    if (this.listenerCount(event) === 0) return
    try {
      this.emit(event, detail())
    } catch (error) {
      process.emitWarning(`relock: a '${event}' listener threw: ${error && error.message}`)
    }
  }

  // A problem that did not fail a call: a lock copied to fewer replicas than asked, under the
  // 'warn' policy. Listeners of 'replication' get it; without one it becomes a process warning.
  #noticed(info) {
    const error = errorFromRecord(info)
    if (this.listenerCount('replication') > 0) this.#notify('replication', () => ({ error }))
    else process.emitWarning(`relock: ${error.message}`, 'RelockReplicationWarning')
  }

  // Starts a native call whose result comes back through #settleCompleted, in a batch with the
  // other results that finished meanwhile.
  // `args()` checks and returns the arguments: bad ones reject the promise, like native failures.
  // `started` receives what the native method returned (the cancel handle of an acquire).
  #start(method, args, started) {
    return this.#startOn(this.#native, method, args, started)
  }

  // As #start, on the sockets of the event loop when the hosts allow it (results come back
  // through #settle, in the callback that read them).
  #startDirect(method, args, nativeMethod, nativeArgs) {
    if (this.#direct) return this.#startOn(this.#direct, method, args)
    return this.#start(nativeMethod, nativeArgs)
  }

  // A multi-key call on the event loop's sockets when it can be made there, else natively.
  async #oneCall(method, args) {
    if (this.#direct) {
      const answer = await this.#startOn(this.#direct, 'oneCall', () => [method, ...args()], undefined, NOT_STARTED)
      if (answer !== NOT_STARTED) return answer
    }
    return this.#start(method, args)
  }

  // `notStarted`: what the promise resolves to when the target declines the call.
  #startOn(target, method, args, started, notStarted = null) {
    return new Promise((resolve, reject) => {
      const id = (this.#nextCallId = (this.#nextCallId + 1) >>> 0)
      // Registered first: a call can settle before `target[method]` returns (the sockets of the
      // event loop send a full batch at once, and with it settle what has finished).
      if (this.#calls.size === 0) clientsInUse.add(this)
      this.#calls.set(id, { resolve, reject })
      let handle
      try {
        handle = target[method](id, ...args())
      } catch (error) {
        this.#forget(id)
        reject(toRelockError(error))
        return
      }
      if (handle === false) {
        // Not started here (the direct first attempt of an acquire that must wait natively).
        this.#forget(id)
        resolve(notStarted)
        return
      }
      started?.(handle)
    })
  }

  #settleCompleted() {
    const records = this.#native.takeCompleted()
    for (let at = 0; at < records.length; at += 4) {
      if (records[at + 1] === LOST) this.#lossHandlers.get(records[at])?.(errorFromRecord(records[at + 2]))
      else this.#settle(records[at], records[at + 1], records[at + 2], records[at + 3])
    }
  }

  // `value` is the result, or the failure as data when not `ok`; `extra` a lease's validity.
  #settle(id, ok, value, extra) {
    const call = this.#calls.get(id)
    if (!call) return // settled by close() already
    this.#forget(id)
    if (!ok) call.reject(errorFromRecord(value))
    else if (extra !== undefined) call.resolve({ token: value, validity: extra })
    else call.resolve(value)
  }

  #forget(id) {
    this.#calls.delete(id)
    this.#leaveInUseWhenIdle()
  }

  #leaveInUseWhenIdle() {
    if (this.#calls.size === 0 && this.#holds.size === 0) clientsInUse.delete(this)
  }

  // A hold ends once: released, lost or closed.
  #endHold(hold, outcome) {
    if (!this.#holds.delete(hold)) return
    this.#leaveInUseWhenIdle()
    this.#metrics?.holdEnded(hold.native.key, outcome, performance.now() - hold.acquiredAt)
  }

  // Gives up a hold: the release, after which no loss can be reported for it, except one that
  // came first and may still be on its way (it is reported now, if it has not been).
  #release(hold, native) {
    this.#endHold(hold, 'released')
    const releasing = this.#direct ? this.#startOn(this.#direct, 'release', () => [native]) : this.#start('release', () => [native])
    return releasing.then(
      (released) => {
        this.#lossHandlers.delete(hold.lostId)
        return released
      },
      (error) => {
        if (error.code === 'ERR_RELOCK_LOCK_LOST') this.#lossHandlers.get(hold.lostId)?.(error)
        this.#lossHandlers.delete(hold.lostId)
        throw error
      },
    )
  }

  /** Redis hosts by address, without credentials. */
  get hosts() {
    return this.#native.hostLabels
  }

  get closed() {
    return this.#native.closed
  }

  lock(key, ttl, options) {
    if (Array.isArray(key)) return this.#oneCall('lockMany', () => [expectKeys(key), expectNumber('ttl', ttl)])
    const args = () => [expectString('key', key), expectNumber('ttl', ttl), expectOptions('options', options, LOCK_OPTIONS)]
    return this.#startDirect('lock', () => [...args(), false], 'lock', args)
  }

  lockWithValidity(key, ttl, options) {
    const args = () => [expectString('key', key), expectNumber('ttl', ttl), expectOptions('options', options, LOCK_OPTIONS)]
    return this.#startDirect('lock', () => [...args(), true], 'lockWithValidity', args)
  }

  extend(key, token, ttl) {
    const args = () => [expectString('key', key), expectString('token', token), expectNumber('ttl', ttl)]
    return this.#startDirect('extend', args, 'extend', args)
  }

  unlock(key, token) {
    if (Array.isArray(key)) return this.#oneCall('unlockMany', () => [expectKeys(key), expectString('token', token)])
    const args = () => [expectString('key', key), expectString('token', token)]
    return this.#startDirect('unlock', args, 'unlock', args)
  }

  /**
   * Waits until `key` is free and takes it with a lease that the native watchdog renews while
   * it is held. Resolves to a Lock handle. An array of keys takes all of them or none.
   */
  acquire(key, options) {
    return rejectingOnThrow(() => {
      const given = expectOptions('options', options, ACQUIRE_OPTIONS)
      return Array.isArray(key) ? this.#acquireMany(key, given) : this.#acquire(key, given)
    })
  }

  /**
   * Makes exactly one attempt: resolves to a Lock handle, or to null when the lock is held.
   * Takes the options of `acquire` but `waitTimeout`.
   */
  tryAcquire(key, options) {
    return call(async () => {
      const given = expectOptions('options', options, TRY_ACQUIRE_OPTIONS)
      try {
        return await this.acquire(key, { ...given, waitTimeout: 0 })
      } catch (error) {
        if (error.code !== 'ERR_RELOCK_WAIT_TIMEOUT') throw error
        if (error.cause) throw error.cause
        return null
      }
    })
  }

  // Throws on bad input; `acquire` turns that into a rejection.
  #acquire(key, options) {
    expectString('key', key)
    const reentered = heldInChain.getStore()?.get(this)?.get(key)
    if (reentered) {
      const refusal = reentered.refusal(key)
      if (refusal) throw refusal
      reentered.count++
      return Promise.resolve(new Lock(reentered))
    }
    return this.#wait(key, options, 'acquire', [key])
  }

  #acquireMany(keys, options) {
    expectKeys(keys)
    return this.#wait(keys.join(', '), options, 'acquireMany', [keys])
  }

  /**
   * A read-write lock on `key`: many readers or one writer, writer-preferring (or strictly in
   * arrival order with `fair: true`).
   */
  rwlock(key) {
    expectString('key', key)
    return new ReadWriteLock(key, this.#readWriteCalls)
  }

  // What every ReadWriteLock of this client calls (one object: a lock is often made per use).
  #readWriteCalls = {
    acquire: (key, write, options) =>
      rejectingOnThrow(() =>
        this.#wait(key, expectOptions('options', options, ACQUIRE_OPTIONS), 'acquireReadWrite', [key, write], write ? this.#writeHandle : this.#readHandle),
      ),
    using: (acquire, options, fn) => this.#usingHandle(acquire, options, fn),
    state: (key) => call(() => this.#start('rwlockState', () => [key])),
  }

  // `run(method, hold)` runs a native call on a read-write hold: 'downgrade' or 'upgrade'.
  #runOnHold = (method, hold) => this.#start(method, () => [hold.native])
  #readHandle = (hold) => new ReadWriteHandle(hold, 'read', this.#runOnHold)
  #writeHandle = (hold) => new ReadWriteHandle(hold, 'write', this.#runOnHold)

  /** A semaphore on `key` of `options.permits` permits. */
  semaphore(key, options) {
    expectString('key', key)
    const { permits } = expectOptions('options', options, SEMAPHORE_OPTIONS) ?? {}
    if (typeof permits !== 'number') throw invalid(`options.permits must be the semaphore's number of permits, got ${describe(permits)}`)
    return new Semaphore(key, permits, {
      acquire: (options) =>
        rejectingOnThrow(() => {
          const given = expectOptions('options', options, PERMITS_OPTIONS)
          const count = given?.permits ?? 1
          return this.#wait(key, given, 'acquirePermits', [key, permits], (hold) => new PermitHandle(hold, count))
        }),
      using: (acquire, options, fn) => this.#usingHandle(acquire, options, fn),
      state: () => call(() => this.#start('semaphoreState', () => [key])),
    })
  }

  // Waits for a hold of any primitive: the native `method(...args, config, lostId)` resolves to
  // the native lock, whose loss takeCompleted() reports under `lostId`; `handle(hold)` makes the
  // handle (a Lock by default). The first attempt is made on the event loop's sockets when the
  // hosts allow it; what is not free (or not eligible there) is waited for by the native client,
  // with the same method.
  // The options are read once, here: what the caller changes afterwards changes nothing.
  async #wait(label, options, method, args, handle = newLock) {
    const signal = options?.signal
    const onLost = options?.onLost
    const config = options && nativeConfig(options)
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('options.signal must be an AbortSignal')
    if (signal?.aborted) throw abortError(signal)

    let hold = null
    let request = null
    // A loss reported before the hold was made (the lock lost while its acquire was answered).
    let lostFirst = null
    const waitStarted = performance.now()
    const lostId = (this.#nextLostId = (this.#nextLostId + 1) >>> 0)
    const loseHold = (reason) => {
      this.#endHold(hold, 'lost')
      hold.abort(reason)
      this.#notify('lost', () => ({ key: label, fence: hold.native.fence, error: reason }))
    }
    // Called once at most: with the loss the native side reports, or with the one a release
    // found first.
    this.#lossHandlers.set(lostId, (reason) => {
      this.#lossHandlers.delete(lostId)
      if (hold) loseHold(reason)
      else lostFirst = reason
      if (onLost) {
        try {
          onLost(reason)
        } catch (error) {
          process.emitWarning(`relock: the onLost callback threw: ${error && error.message}`)
        }
      }
    })
    const cancel = () => request?.cancel()
    signal?.addEventListener('abort', cancel, { once: true })
    this.#metrics?.waitStarted()
    try {
      let native = this.#direct ? await this.#firstAttempt(method, args, config, lostId, signal) : null
      native ??= await this.#start(method, () => [...args, config, lostId], (started) => { request = started })
      this.#metrics?.waitEnded(label, 'acquired', performance.now() - waitStarted)
      hold = new Hold(native, this.#notify, {
        release: () => this.#release(hold, native),
        extend: (ttl) => this.#start('extendHeld', () => [native, ttl]),
        lostId,
      })
      this.#holds.add(hold)
      clientsInUse.add(this)
      const waitedMs = performance.now() - waitStarted
      this.#notify('acquired', () => ({ key: label, fence: native.fence, waitedMs }))
      if (lostFirst) loseHold(lostFirst)
      return handle(hold)
    } catch (error) {
      this.#lossHandlers.delete(lostId)
      const relockError = toRelockError(error)
      if (!hold) this.#metrics?.waitEnded(label, WAIT_OUTCOMES[relockError.code] ?? 'failed', performance.now() - waitStarted)
      if (relockError.code === 'ERR_RELOCK_WAIT_TIMEOUT' && config?.waitTimeout !== 0) this.#notify('timeout', () => ({ key: label, waitedMs: performance.now() - waitStarted }))
      if (relockError.code === 'ABORT_ERR' && signal) throw abortError(signal)
      throw relockError
    } finally {
      signal?.removeEventListener('abort', cancel)
    }
  }

  // `using` for the handles of a read-write lock or a semaphore (not re-entrant): runs `fn`
  // with the handle and releases it afterwards; rejects with the loss if the hold was lost.
  async #usingHandle(acquire, options, fn) {
    if (typeof options === 'function') [options, fn] = [undefined, options]
    if (typeof fn !== 'function') throw invalid(`fn must be a function, got ${describe(fn)}`)
    const handle = await acquire(options)
    let result
    try {
      result = await fn(handle)
    } catch (error) {
      await handle.release().catch(() => {})
      throw error
    }
    await handle.release()
    return result
  }

  // An acquire's first attempt on the event loop's sockets: a lock, or null when the key is
  // not free (or the hosts need the native client). An abort rejects at once; a lock that the
  // attempt takes after it is released again.
  #firstAttempt(method, args, config, lostId, signal) {
    const attempt = this.#startOn(this.#direct, 'firstAttempt', () => [method, ...args, config, lostId])
    if (!signal) return attempt
    return new Promise((resolve, reject) => {
      const abort = () => {
        reject(abortError(signal))
        attempt.then((native) => native && this.#startOn(this.#direct, 'release', () => [native])).catch(() => {})
      }
      signal.addEventListener('abort', abort, { once: true })
      attempt.then(
        (native) => {
          signal.removeEventListener('abort', abort)
          resolve(native)
        },
        (error) => {
          signal.removeEventListener('abort', abort)
          reject(error)
        },
      )
    })
  }

  /**
   * Runs `fn(lock)` while holding `key`, and releases it afterwards. A nested `using` or
   * `acquire` of the same key inside `fn` (in the same async call chain) re-enters at once.
   * The outermost `using` of a key ends its hold when `fn` settles, whatever handles `fn` left
   * unreleased; a nested one gives its share back, and rejects if the lock was lost.
   */
  async using(key, options, fn) {
    if (Array.isArray(key)) return this.#usingHandle((given) => this.acquire(key, given), options, fn)
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
      : () => (hold.state !== 'held' && hold.abortReason !== undefined ? Promise.reject(hold.abortReason) : lock.release())
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

  /** The state of `key` on every host: holder, remaining ttl, fence, fair queue, readers. */
  inspect(key) {
    return call(async () => {
      expectString('key', key)
      const states = await this.#start('inspect', () => [key])
      // What is absent is null, as the types say (N-API leaves a missing value undefined).
      return states.map((state) => ({
        host: state.host,
        holder: state.holder ?? null,
        ttl: state.ttl ?? null,
        fence: state.fence ?? null,
        waiters: state.waiters.map((waiter) => ({ token: waiter.token, expiresIn: waiter.expiresIn ?? null, ttl: waiter.ttl ?? null })),
        foreign: state.foreign,
        semaphore: state.semaphore,
        readers: state.readers,
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
      const listing = await this.#start('list', () => [pattern, expectOptions('options', options, LIST_OPTIONS)?.limit])
      const keys = listing.keys
      Object.defineProperty(keys, 'failedHosts', { value: listing.failedHosts.map((failure) => ({ host: failure.host, error: errorFromRecord(failure) })), enumerable: false })
      return keys
    })
  }

  /** Releases `key` whoever holds it, as its holder would. For operators. */
  forceRelease(key) {
    return call(() => {
      expectString('key', key)
      return this.#start('forceRelease', () => [key])
    })
  }

  async close() {
    this.#direct?.close()
    const closing = this.#native.close()
    const closed = new RelockError('ERR_RELOCK_CLOSED', 'the Redlock client is closed')
    for (const call of this.#calls.values()) call.reject(closed)
    this.#calls.clear()
    await closing
    // The native side released these locks. Closing is not losing: their signals abort with
    // ERR_RELOCK_CLOSED, onLost is not called, and they are reported as released.
    for (const hold of [...this.#holds]) {
      this.#endHold(hold, 'closed')
      this.#lossHandlers.delete(hold.lostId)
      const { key, fence } = hold.native
      hold.state = 'ended'
      hold.abort(new RelockError('ERR_RELOCK_CLOSED', `the client was closed while holding '${key}'`))
      this.#notify('released', () => ({ key, fence, heldMs: performance.now() - hold.acquiredAt, closed: true }))
    }
    this.#holds.clear()
    clientsInUse.delete(this)
  }

  [inspect.custom]() {
    return `Redlock { hosts: ${inspect(this.hosts)}, closed: ${this.closed} }`
  }
}

module.exports = { Redlock }
