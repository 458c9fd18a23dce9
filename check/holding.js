'use strict'

// What a holder does with a grant, and what it writes down about it: it checks isValid()
// right before every write to the register and records that moment; while it pauses inside the
// critical section it keeps polling isValid() (cheap, no round trip) so the history knows
// closely when the lease ended, and whether the loss was reported in time.

const { now, sleep } = require('./clock')

const POLL_EVERY_MS = 10
const DRIFT_FACTOR = 0.01 // the library's default, used for the plain lock's window

class Holding {
  #nextGrantId = 0

  constructor({ recorder, register, rng }) {
    this.recorder = recorder
    this.register = register
    this.rng = rng
  }

  #record(type, fields) {
    this.recorder.record(type, fields)
  }

  /** A Lock handle from acquire or using. */
  /**
   * A Lock handle from acquire or using. `fence` overrides the handle's (null for a reader,
   * whose grant hands out no fence); `extra` is recorded with the grant (a semaphore's
   * permits, a multi-key lock's keys and fences).
   */
  handleGrant({ kind, topology, key, handle, cid, callStart, ttl, maxHold, fair, reentrant, fence = handle.fence, extra = {} }) {
    const grant = {
      gid: `${this.recorder.who}#${++this.#nextGrantId}`, kind, topology, key, handle, token: handle.token, fence, ...extra,
      start: now(), lastValidAt: null, invalidAt: null, releasing: false,
      isValid: () => handle.isValid(), remaining: () => handle.remainingMs(),
    }
    this.#record('grant', { gid: grant.gid, cid, kind, topology, key, token: grant.token, fence: grant.fence, start: grant.start, callStart, ttl, maxHold, fair, reentrant, ...extra })
    const { signal } = handle
    const onAbort = () => this.#record('lost', { gid: grant.gid, via: 'signal', t: now(), code: signal.reason && signal.reason.code })
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    return grant
  }

  /**
   * A token from lock/lockWithValidity. Its window ends at the earlier of the validity the
   * call reported (counted from when it resolved) and callStart + ttl: the key cannot outlive
   * that on a host that keeps its data, since every SET was sent after the call started.
   * A plain lock reports no validity, so its holder counts on ttl − drift from the call start.
   */
  plainGrant({ kind, topology, key, token, cid, callStart, ttl, validity, extra = {} }) {
    const start = now()
    const safeUntil = callStart + ttl - (ttl * DRIFT_FACTOR + 2)
    const windowEnd = validity == null ? safeUntil : Math.min(start + validity, callStart + ttl)
    const grant = {
      gid: `${this.recorder.who}#${++this.#nextGrantId}`, kind, topology, key, token, fence: null, ...extra, start, windowEnd,
      lastValidAt: null, invalidAt: null, releasing: false,
      isValid: () => now() < grant.windowEnd, remaining: () => Math.max(0, grant.windowEnd - now()),
    }
    this.#record('grant', { gid: grant.gid, cid, kind, topology, key, token, fence: null, start, callStart, ttl, validity, windowEnd, ...extra })
    return grant
  }

  /** Checks isValid() now; notes the first time it turns false before the holder let go. */
  observe(grant) {
    const t = now()
    const valid = grant.isValid()
    const remaining = grant.remaining()
    if (valid) {
      grant.lastValidAt = t
      grant.lastRemaining = remaining
    } else if (grant.invalidAt === null && !grant.releasing) {
      grant.invalidAt = t
      this.#record('invalid', { gid: grant.gid, t, lastValidAt: grant.lastValidAt, lastRemaining: grant.lastRemaining })
    }
    return { t, valid, remaining }
  }

  /** Observes and records the observation (the check right before a write). */
  check(grant, purpose) {
    const seen = this.observe(grant)
    this.#record('obs', { gid: grant.gid, t: seen.t, valid: seen.valid, remaining: seen.remaining, purpose })
    return seen
  }

  /** Pauses `ms` inside the critical section, polling isValid() meanwhile. */
  async pause(grant, ms) {
    const until = now() + ms
    for (;;) {
      if (!this.observe(grant).valid) return
      const left = until - now()
      if (left <= 0) return
      await sleep(Math.min(POLL_EVERY_MS, left))
    }
  }

  /** One protected write: the fenced register (handles only), then the counter. */
  async write(grant) {
    try {
      if (grant.fence != null) {
        const seen = this.check(grant, 'fenced-write')
        if (!seen.valid) return false
        const result = await this.register.fencedWrite(`${grant.topology}/${grant.key}`, grant.fence, grant.token, grant.gid)
        this.#record('write', { gid: grant.gid, checkedAt: seen.t, remaining: seen.remaining, done: now(), ...result })
      }
      const before = this.check(grant, 'counter-read')
      if (!before.valid) return false
      const read = await this.register.readCounter(`${grant.topology}/${grant.key}`)
      await sleep(this.rng.int(0, 3))
      const seen = this.check(grant, 'counter-write')
      if (!seen.valid) return false
      await this.register.writeCounter(`${grant.topology}/${grant.key}`, read + 1)
      this.#record('rmw', { gid: grant.gid, token: grant.token, topology: grant.topology, key: grant.key, read, checkedAt: seen.t, remaining: seen.remaining, done: now() })
      return true
    } catch (error) {
      this.#record('register-error', { gid: grant.gid, t: now(), message: error.message })
      return false
    }
  }

  /**
   * A section that only reads (a reader of a read-write lock, a holder of permits): pauses,
   * some longer than the ttl, watching isValid(); it reads the key's counter, so a writer
   * beside it would also show in the register's history.
   */
  async readSection(grant, ttl) {
    const reads = this.rng.int(1, 3)
    for (let i = 0; i < reads; i++) {
      const seen = this.check(grant, 'read')
      if (!seen.valid) return this.awaitLossReport(grant)
      try {
        await this.register.readCounter(`${grant.topology}/${grant.key}`)
      } catch (error) {
        this.#record('register-error', { gid: grant.gid, t: now(), message: error.message })
      }
      const long = this.rng.chance(0.15)
      await this.pause(grant, long ? Math.round(ttl * 1.5) : this.rng.int(0, Math.round(ttl * 0.6)))
    }
    await this.awaitLossReport(grant)
  }

  /** A multi-key lock's critical section: the writes of each of its keys, with its fence. */
  async multiSection(grant, ttl, ctx) {
    const { key: label, fence } = grant
    try {
      for (const [index, key] of grant.keys.entries()) {
        // One key at a time, under its own name and fence (the register is per key).
        Object.assign(grant, { key, fence: grant.fences[index] })
        if (!(await this.write(grant))) return this.awaitLossReport(grant)
        if (ctx.stopping()) return
        await this.pause(grant, this.rng.int(0, Math.round(ttl * 0.4)))
      }
    } finally {
      Object.assign(grant, { key: label, fence })
    }
    await this.awaitLossReport(grant)
  }

  /** The critical section: a few writes with pauses between them, some longer than the ttl. */
  async criticalSection(grant, ttl, { stopping } = {}) {
    const writes = this.rng.int(1, 3)
    for (let i = 0; i < writes; i++) {
      if (!(await this.write(grant))) return this.awaitLossReport(grant)
      if (stopping && stopping()) return
      const long = this.rng.chance(0.15)
      const pauseMs = long ? Math.round(ttl * 1.5) : this.rng.int(0, Math.round(ttl * 0.6))
      await this.pause(grant, grant.windowEnd ? Math.min(pauseMs, Math.max(0, grant.windowEnd - now())) : pauseMs)
    }
    await this.awaitLossReport(grant)
  }

  /**
   * After isValid() turned false, a careful holder gives the report a moment to arrive before
   * it lets go (release() would otherwise end the lock first and the report could not come).
   */
  async awaitLossReport(grant) {
    if (!grant.handle || grant.invalidAt === null) return
    const until = now() + 100
    while (!grant.handle.signal.aborted && now() < until) await sleep(5)
  }

  /** The holder lets go now (before release() or unlock() runs): the end of its window. */
  letGo(grant) {
    this.observe(grant)
    grant.releasing = true
    this.#record('release-call', { gid: grant.gid, t: now(), lastValidAt: grant.lastValidAt })
  }

  /** Releases a handle and records the outcome. */
  async release(grant) {
    this.letGo(grant)
    const start = now()
    try {
      const value = await grant.handle.release()
      this.#record('call', { op: 'release', gid: grant.gid, topology: grant.topology, key: grant.key, start, end: now(), ok: true, value })
      return value
    } catch (error) {
      this.#record('call', { op: 'release', gid: grant.gid, topology: grant.topology, key: grant.key, start, end: now(), ok: false, code: error.code ?? 'NON_RELOCK' })
      return null
    }
  }
}

module.exports = { Holding, POLL_EVERY_MS, DRIFT_FACTOR }
