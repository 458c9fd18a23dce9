'use strict'

// A TCP proxy on a free loopback port in front of one Redis server, for injecting network
// faults: delay each chunk (per direction), blackhole a direction (bytes are swallowed, the
// connection stays open, as behind a dead link), or reset every connection.

const net = require('node:net')

class Proxy {
  #server
  #pairs = new Set()
  // Per direction: 'up' is client → Redis, 'down' is Redis → client.
  #delayMs = { up: 0, down: 0 }
  #blackholed = { up: false, down: false }
  #passBeforeBlackhole = { up: null, down: null }

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

  /** Swallows every byte in the given direction until `heal()`; connections stay open. */
  blackhole(direction = 'both') {
    for (const side of sides(direction)) this.#blackholed[side] = true
  }

  /**
   * Lets the next `chunks` chunks through in the given direction, then swallows every later
   * byte there until `heal()`: a link that dies right after a given request.
   */
  blackholeAfter(chunks, direction = 'both') {
    for (const side of sides(direction)) this.#passBeforeBlackhole[side] = chunks
  }

  /** Ends delays and blackholes (bytes swallowed meanwhile stay lost). */
  heal() {
    this.#delayMs = { up: 0, down: 0 }
    this.#blackholed = { up: false, down: false }
    this.#passBeforeBlackhole = { up: null, down: null }
  }

  /** Resets every open connection (RST to both ends); new connections are accepted. */
  reset() {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy()
      upstream.resetAndDestroy()
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

  // Chunks keep their order: each is sent when its own delay is over and all earlier ones went.
  #pipe(from, to, side) {
    let last = Promise.resolve()
    from.on('data', (chunk) => {
      if (this.#passBeforeBlackhole[side] !== null && this.#passBeforeBlackhole[side]-- <= 0) {
        this.#passBeforeBlackhole[side] = null
        this.#blackholed[side] = true
      }
      if (this.#blackholed[side]) return
      const delay = this.#delayMs[side]
      if (delay === 0 && this.#idle(side)) {
        to.write(chunk)
        return
      }
      this.#pending[side]++
      const due = new Promise((resolve) => setTimeout(resolve, delay))
      last = Promise.all([last, due]).then(() => {
        this.#pending[side]--
        if (!to.destroyed && !this.#blackholed[side]) to.write(chunk)
      })
    })
  }

  #pending = { up: 0, down: 0 }

  #idle(side) {
    return this.#pending[side] === 0
  }
}

function sides(direction) {
  if (direction === 'both') return ['up', 'down']
  if (direction === 'up' || direction === 'down') return [direction]
  throw new Error(`direction must be 'up', 'down' or 'both', got ${direction}`)
}

module.exports = { Proxy }
