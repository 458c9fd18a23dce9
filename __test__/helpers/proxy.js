'use strict'

// A TCP proxy on a free loopback port in front of one Redis server, for injecting network
// faults: delay each chunk (per direction), stall a direction (bytes are held back while the
// connection stays open, as behind a dead link that TCP keeps retransmitting over), or reset
// every connection. Bytes are never dropped from a live connection: TCP does not do that, and a
// client that lost a request silently could not tell which reply belongs to which request.

const net = require('node:net')

class Proxy {
  #server
  #pairs = new Set()
  // Per direction: 'up' is client → Redis, 'down' is Redis → client.
  #delayMs = { up: 0, down: 0 }
  #stalled = { up: false, down: false }
  // Chunks still to pass before a direction stalls by itself (see stallAfter).
  #stallAfterChunks = { up: Infinity, down: Infinity }
  #flushers = new Set()

  constructor(targetPort) {
    this.targetPort = targetPort
    this.port = 0
  }

  static async start(targetPort) {
    const proxy = new Proxy(targetPort)
    await proxy.#listen()
    return proxy
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  get connections() {
    return this.#pairs.size
  }

  /** Delays every chunk by `ms` in the given direction ('up', 'down' or 'both'). */
  delay(ms, direction = 'both') {
    for (const side of sides(direction)) this.#delayMs[side] = ms
  }

  /** Holds back every byte in the given direction until `heal()`; connections stay open. */
  stall(direction = 'both') {
    for (const side of sides(direction)) this.#stalled[side] = true
  }

  /** Lets `chunks` more chunks through in the given direction, then stalls it. */
  stallAfter(chunks, direction = 'up') {
    for (const side of sides(direction)) this.#stallAfterChunks[side] = chunks
  }

  /** Ends delays and stalls; the bytes held back go on, in order. */
  heal() {
    this.#delayMs = { up: 0, down: 0 }
    this.#stalled = { up: false, down: false }
    this.#stallAfterChunks = { up: Infinity, down: Infinity }
    for (const flush of this.#flushers) flush()
  }

  /** Resets every open connection (RST to both ends); new connections are accepted. */
  reset() {
    for (const { client, upstream } of this.#pairs) {
      resetOrDestroy(client)
      resetOrDestroy(upstream)
    }
    this.#pairs.clear()
  }

  async close() {
    this.reset()
    await new Promise((resolve) => this.#server.close(() => resolve()))
  }

  #listen() {
    this.#server = net.createServer((client) => this.#accept(client))
    this.#server.unref()
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', () => {
        this.port = this.#server.address().port
        resolve()
      })
    })
  }

  #accept(client) {
    client.setNoDelay(true)
    const upstream = net.connect({ port: this.targetPort, host: '127.0.0.1', noDelay: true })
    const pair = { client, upstream }
    this.#pairs.add(pair)
    const end = () => {
      this.#pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    this.#pipe(client, upstream, 'up')
    this.#pipe(upstream, client, 'down')
  }

  // Chunks keep their order: each goes when its own delay is over, all earlier ones went, and
  // its direction is not stalled.
  #pipe(from, to, side) {
    const queue = []
    const flush = () => {
      while (queue.length > 0 && queue[0].ready && !this.#stalled[side]) {
        if (!to.destroyed) to.write(queue.shift().chunk)
        else queue.shift()
      }
    }
    this.#flushers.add(flush)
    from.once('close', () => this.#flushers.delete(flush))
    from.on('data', (chunk) => {
      if (this.#stallAfterChunks[side] !== Infinity && this.#stallAfterChunks[side]-- <= 0) this.#stalled[side] = true
      const delay = this.#delayMs[side]
      const entry = { chunk, ready: delay === 0 }
      queue.push(entry)
      if (entry.ready) return flush()
      setTimeout(() => {
        entry.ready = true
        flush()
      }, delay)
    })
  }
}

// Node (20 at least) cannot reset a socket whose end is under way: the reset fails with
// EINVAL, yet the handle counts as closing and is never closed, so the process spins at exit
// forever. Such a socket is only destroyed (its peer sees a FIN instead of a RST).
function resetOrDestroy(socket) {
  if (socket.writableEnded || socket.destroyed) socket.destroy()
  else socket.resetAndDestroy()
}

function sides(direction) {
  if (direction === 'both') return ['up', 'down']
  if (direction === 'up' || direction === 'down') return [direction]
  throw new Error(`direction must be 'up', 'down' or 'both', got ${direction}`)
}

module.exports = { Proxy, resetOrDestroy }
