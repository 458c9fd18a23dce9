'use strict'

// `lock`, `unlock`, `extend`, an acquire's first attempt and a handle's release on Node's own
// sockets, so that a call crosses no thread: the
// native core turns calls into bytes and bytes into results synchronously (NativeDirect), and
// this file only moves bytes between it and one socket per host, on the event loop. Requests
// made in one turn of the event loop leave together (on one host, in writes of at most
// BATCH_CALLS_ONE_HOST calls); replies settle their promises in the callback that read them.

const net = require('node:net')

// Many loops answered in one read make their next calls in one turn. Sent in one write, Redis
// would wait idle while the client builds the whole batch, and the client while Redis answers
// it; sent a part at a time, both work at once (64 loops of lock + unlock on one host: 1.7
// times the cycles). Smaller parts cost more writes than they gain. Over several hosts the
// servers already work beside the client, and more writes only cost (3 hosts: 0.8 times the
// cycles), so a turn's calls go out in one write per host.
const BATCH_CALLS_ONE_HOST = 16

class DirectDriver {
  #native
  #addresses
  #sockets
  #connectTimeout
  #settle
  #busy = false
  #closed = false
  #turnQueued = false
  #callsSinceTurn = 0
  #batchCalls
  #deadline = null
  #deadlineAt = Infinity
  #retries = new Set()

  /**
   * @param native a NativeDirect
   * @param connectTimeout ms a connect may take
   * @param settle (id, ok, value, extra) => void, for each finished call
   */
  constructor(native, connectTimeout, settle) {
    this.#native = native
    this.#addresses = native.addresses
    this.#sockets = this.#addresses.map(() => null)
    this.#batchCalls = this.#addresses.length === 1 ? BATCH_CALLS_ONE_HOST : Infinity
    this.#connectTimeout = connectTimeout
    this.#settle = settle
  }

  lock(id, key, ttl, retry, withValidity) {
    this.#native.lock(id, key, ttl, retry, withValidity)
    this.#turnSoon()
  }

  unlock(id, key, token) {
    this.#native.unlock(id, key, token)
    this.#turnSoon()
  }

  extend(id, key, token, ttl) {
    this.#native.extend(id, key, token, ttl)
    this.#turnSoon()
  }

  // The first attempt of an acquire (`method`: acquire, acquireReadWrite, acquirePermits);
  // false when the wait belongs to the native client from the start.
  firstAttempt(id, method, ...args) {
    const started = this.#native[method](id, ...args)
    if (started) this.#turnSoon()
    return started
  }

  // A multi-key `lock` or `unlock` (`method`: lockMany, unlockMany); false when it belongs to
  // the native client.
  oneCall(id, method, ...args) {
    const started = this.#native[method](id, ...args)
    if (started) this.#turnSoon()
    return started
  }

  release(id, lock) {
    this.#native.release(id, lock)
    this.#turnSoon()
  }

  // Ends the sockets once the releases of locks still being taken are written.
  close() {
    this.#closed = true
    this.#native.close()
    for (const retry of this.#retries) clearTimeout(retry)
    this.#retries.clear()
    clearTimeout(this.#deadline)
    this.#turn()
    for (const socket of this.#sockets) {
      if (!socket) continue
      // What was written still goes out; a server that never answers cannot hold the process.
      socket.end()
      socket.unref()
      socket.setTimeout(this.#connectTimeout, () => socket.destroy())
    }
  }

  // Calls made in this turn of the event loop go out together after it, or (on one host) once
  // BATCH_CALLS_ONE_HOST of them wait.
  #turnSoon() {
    if (++this.#callsSinceTurn >= this.#batchCalls) {
      this.#turn()
      return
    }
    if (this.#turnQueued) return
    this.#turnQueued = true
    process.nextTick(this.#turnNow)
  }

  #turnNow = () => {
    this.#turnQueued = false
    this.#turn()
  }

  #turn() {
    this.#callsSinceTurn = 0
    const turn = this.#native.turn()
    const actions = turn[2]
    let at = 3
    for (let i = 0; i < actions; i++, at += 2) {
      const host = turn[at]
      const bytes = turn[at + 1]
      if (bytes === null) {
        if (!this.#closed) this.#connect(host)
      } else {
        this.#sockets[host]?.write(bytes)
      }
    }
    this.#keepAlive(turn[1])
    this.#expireAfter(turn[0])
    for (; at < turn.length; at += 4) {
      if (turn[at + 1] === 2) this.#retryAfter(turn[at], turn[at + 2])
      else this.#settle(turn[at], turn[at + 1] === 1, turn[at + 2], turn[at + 3])
    }
  }

  #retryAfter(id, ms) {
    const retry = setTimeout(() => {
      this.#retries.delete(retry)
      this.#native.retry(id)
      this.#turn()
    }, ms)
    this.#retries.add(retry)
  }

  // One timer, for the call in flight that times out first.
  #expireAfter(ms) {
    if (ms < 0) {
      clearTimeout(this.#deadline)
      this.#deadline = null
      this.#deadlineAt = Infinity
      return
    }
    const at = performance.now() + ms
    if (this.#deadline !== null && this.#deadlineAt <= at + 1) return
    clearTimeout(this.#deadline)
    this.#deadlineAt = at
    this.#deadline = setTimeout(() => {
      this.#deadline = null
      this.#deadlineAt = Infinity
      this.#native.expire()
      this.#turn()
    }, Math.ceil(ms))
    this.#deadline.unref()
  }

  // Sockets keep the process alive only while they wait for answers.
  #keepAlive(busy) {
    if (busy === this.#busy) return
    this.#busy = busy
    for (const socket of this.#sockets) {
      if (busy) socket?.ref()
      else socket?.unref()
    }
  }

  #connect(host) {
    const address = this.#addresses[host]
    const socket = address.path
      ? net.connect({ path: address.path })
      : net.connect({ host: address.host, port: address.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30000 })
    this.#sockets[host] = socket
    if (!this.#busy) socket.unref()
    let failure = null
    let timedOut = false
    const connecting = setTimeout(() => {
      timedOut = true
      socket.destroy()
    }, this.#connectTimeout)
    connecting.unref()
    socket.once('connect', () => {
      clearTimeout(connecting)
      this.#native.connected(host)
      this.#turn()
    })
    socket.on('data', (bytes) => {
      if (this.#native.received(host, bytes)) {
        // Not a Redis server, or its handshake failed: the native side has failed what waited
        // on this socket, and the next request opens a new one.
        socket.removeAllListeners('data')
        this.#sockets[host] = null
        socket.end()
      }
      this.#turn()
    })
    socket.on('error', (error) => {
      failure = error
    })
    socket.once('close', () => {
      clearTimeout(connecting)
      if (this.#sockets[host] !== socket) return
      this.#sockets[host] = null
      if (this.#closed) return
      this.#native.closed(host, failure ? failure.message : 'the connection closed', timedOut)
      this.#turn()
    })
  }
}

module.exports = { DirectDriver }
