'use strict'

// Read-write locks and semaphores: the objects `rwlock(key)` and `semaphore(key, options)`
// return, and their handles (Locks with a mode, or a number of permits).

const { inspect } = require('node:util')
const { call } = require('./errors.js')
const { Lock, lockHold } = require('./lock.js')

class ReadWriteLock {
  #key
  #calls

  // `calls.acquire(key, write, options)`, `calls.using(acquire, options, fn)`,
  // `calls.state(key)`.
  constructor(key, calls) {
    this.#key = key
    this.#calls = calls
  }

  get key() {
    return this.#key
  }

  /** Waits for a read hold, shared with other readers. */
  read(options) {
    return this.#calls.acquire(this.#key, false, options)
  }

  /** Waits for the write hold, alone. */
  write(options) {
    return this.#calls.acquire(this.#key, true, options)
  }

  usingRead(options, fn) {
    return this.#calls.using((given) => this.read(given), options, fn)
  }

  usingWrite(options, fn) {
    return this.#calls.using((given) => this.write(given), options, fn)
  }

  /** Writer, readers and waiters now. */
  state() {
    return this.#calls.state(this.#key)
  }

  [inspect.custom]() {
    return `ReadWriteLock { key: ${inspect(this.#key)} }`
  }
}

class ReadWriteHandle extends Lock {
  #mode
  #run

  // `run(method, hold)` runs a native call on this hold: 'downgrade' or 'upgrade'.
  constructor(hold, mode, run) {
    super(hold)
    this.#mode = mode
    this.#run = run
  }

  /** `'read'` or `'write'`. */
  get mode() {
    return this.#mode
  }

  /** Turns the write hold into a read hold, with no writer able to come in between. */
  downgrade() {
    return call(async () => {
      await this.#run('downgrade', lockHold(this))
      this.#mode = 'read'
    })
  }

  /**
   * Turns the read hold into the write hold, only when this is the only reader (else
   * ERR_RELOCK_UPGRADE_REFUSED). The handle gets a new fence.
   */
  upgrade() {
    return call(async () => {
      await this.#run('upgrade', lockHold(this))
      this.#mode = 'write'
    })
  }

  [inspect.custom]() {
    return `ReadWriteHandle { key: ${inspect(this.key)}, mode: '${this.#mode}', fence: ${this.fence}, valid: ${this.isValid()} }`
  }
}

class Semaphore {
  #key
  #permits
  #calls

  // `calls.acquire(options)`, `calls.using(acquire, options, fn)`, `calls.state()`.
  constructor(key, permits, calls) {
    this.#key = key
    this.#permits = permits
    this.#calls = calls
  }

  get key() {
    return this.#key
  }

  get permits() {
    return this.#permits
  }

  /** Waits for `options.permits` (default 1) of the permits. */
  acquire(options) {
    return this.#calls.acquire(options)
  }

  using(options, fn) {
    return this.#calls.using((given) => this.acquire(given), options, fn)
  }

  /** Permits free now (never below 0: after `permits` was lowered, more may be in use). */
  available() {
    return call(async () => Math.max(0, this.#permits - (await this.#calls.state()).inUse))
  }

  /** Permits in use, holders and fair waiters now. */
  state() {
    return this.#calls.state()
  }

  [inspect.custom]() {
    return `Semaphore { key: ${inspect(this.#key)}, permits: ${this.#permits} }`
  }
}

class PermitHandle extends Lock {
  #permits

  constructor(hold, permits) {
    super(hold)
    this.#permits = permits
  }

  /** Permits this handle holds. */
  get permits() {
    return this.#permits
  }

  [inspect.custom]() {
    return `PermitHandle { key: ${inspect(this.key)}, permits: ${this.#permits}, valid: ${this.isValid()} }`
  }
}

module.exports = { ReadWriteLock, ReadWriteHandle, Semaphore, PermitHandle }
