'use strict'

// Lock handles: what `acquire` resolves to, and the hold that re-entrant handles of one async
// call chain share.

const { AsyncLocalStorage } = require('node:async_hooks')
const { inspect } = require('node:util')
const { RelockError, errorFromRecord, call, rejectingOnThrow } = require('./errors.js')
const { expectNumber } = require('./options.js')

// The locks held by the current async call chain: Map<Redlock, Map<key, Hold>>. A chain that
// holds a key re-enters it at once instead of waiting for itself.
const heldInChain = new AsyncLocalStorage()

// One native lock shared by the re-entrant handles of one async call chain; released when the
// last handle is, or when the outermost `using` that took it ends, whatever handles are left.
class Hold {
  // `release()` and `extend(ttl)` run the native calls, through the client that took the lock;
  // `lostId` is what the client's completions report its loss under.
  constructor(native, notify, { release, extend, lostId }) {
    this.native = native
    this.notify = notify
    this.release = release
    this.extend = extend
    this.lostId = lostId
    this.count = 1
    // 'held', then 'releasing' once its release began, then 'ended'.
    this.state = 'held'
    // The AbortController behind `signal` is made only when someone asks for the signal.
    this.controller = null
    this.abortReason = undefined
    this.acquiredAt = performance.now()
  }

  // Releases the native lock once, however many handles still count on it. Handles that still
  // count on it (a nested using still running, an inner acquire never released) learn it from
  // the signal: their code runs on without the lock.
  end() {
    if (this.state !== 'held') return Promise.resolve(false)
    this.state = 'releasing'
    const others = this.count - 1
    if (others > 0) {
      this.abort(new RelockError('ERR_RELOCK_LOCK_LOST', `'${this.native.key}' was released by its outermost using while ${others} nested hold${others > 1 ? 's were' : ' was'} still active`))
    }
    return rejectingOnThrow(() => this.release()).then(
      (released) => {
        this.state = 'ended'
        if (released) {
          const heldMs = performance.now() - this.acquiredAt
          this.notify('released', () => ({ key: this.native.key, fence: this.native.fence, heldMs, closed: false }))
        }
        return released
      },
      (error) => {
        this.state = 'ended'
        throw error
      },
    )
  }

  get signal() {
    if (!this.controller) {
      this.controller = new AbortController()
      if (this.abortReason !== undefined) this.controller.abort(this.abortReason)
    }
    return this.controller.signal
  }

  // Ends the hold's signal (once) with `reason`.
  abort(reason) {
    if (this.abortReason !== undefined) return
    this.abortReason = reason
    this.controller?.abort(reason)
  }

  // Why this hold cannot be re-entered, or null if it can.
  refusal(key) {
    if (this.state !== 'held') {
      return new RelockError('ERR_RELOCK_LOCK_LOST', `'${key}' cannot be re-entered: the enclosing using ${this.state === 'releasing' ? 'is releasing it' : 'has released it'}`)
    }
    const lost = this.native.lostReason
    if (lost) return errorFromRecord(lost)
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

  /** The keys held: the one key, or every key of a multi-key lock in the order given. */
  get keys() {
    const parts = this.#hold.native.parts
    return parts.length === 0 ? [this.key] : parts.map((part) => part.key)
  }

  /** One fencing number per key of `keys`. */
  get fences() {
    const parts = this.#hold.native.parts
    return parts.length === 0 ? [this.fence] : parts.map((part) => part.fence)
  }

  /** Aborts, with a RelockError as its reason, when the lock is lost. */
  get signal() {
    return this.#hold.signal
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
      await this.#hold.extend(ttl)
      this.#hold.notify('extended', () => ({ key: this.key, fence: this.fence, ttl }))
    })
  }

  /**
   * Gives the hold up; the lock itself is released when the last hold of the call chain is.
   * Resolves true when this call released it, false when it had been released before; rejects
   * with ERR_RELOCK_LOCK_LOST when the lock had been lost meanwhile.
   */
  release() {
    // Also when called on something that is not a Lock: a rejection, never a throw.
    return rejectingOnThrow(() => {
      if (this.#released) return Promise.resolve(false)
      this.#released = true
      const hold = this.#hold
      if (hold.state !== 'held') return Promise.resolve(false) // its using scope released it
      if (--hold.count > 0) {
        // Another handle still counts on the lock: it stays held, unless it was lost meanwhile.
        const lost = hold.native.lostReason
        return lost ? Promise.reject(errorFromRecord(lost)) : Promise.resolve(true)
      }
      // Rejects with a RelockError only: the client's release settles with one.
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

module.exports = { Hold, Lock, lockHold: (lock) => lockHold(lock), heldInChain }
