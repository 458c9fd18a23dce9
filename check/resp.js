'use strict'

// A tiny RESP2 client over node:net, straight to a redis-server's own port (never through a
// proxy): the checker's view of what the hosts really hold, independent of the library under
// test. A timed-out command drops the connection (and every command queued on it); the next
// command reconnects.

const net = require('node:net')

class RespError extends Error {}

function encode(args) {
  let out = `*${args.length}\r\n`
  for (const arg of args) {
    const text = String(arg)
    out += `$${Buffer.byteLength(text)}\r\n${text}\r\n`
  }
  return out
}

// Parses one reply from `buffer` at `at`; returns [value, next offset] or null if incomplete.
function parse(buffer, at) {
  if (at >= buffer.length) return null
  const lineEnd = buffer.indexOf('\r\n', at)
  if (lineEnd < 0) return null
  const kind = String.fromCharCode(buffer[at])
  const line = buffer.toString('utf8', at + 1, lineEnd)
  const after = lineEnd + 2
  if (kind === '+') return [line, after]
  if (kind === '-') return [new RespError(line), after]
  if (kind === ':') return [Number(line), after]
  if (kind === '$') {
    const length = Number(line)
    if (length < 0) return [null, after]
    if (buffer.length < after + length + 2) return null
    return [buffer.toString('utf8', after, after + length), after + length + 2]
  }
  if (kind === '*') {
    const count = Number(line)
    if (count < 0) return [null, after]
    const items = []
    let offset = after
    for (let i = 0; i < count; i++) {
      const parsed = parse(buffer, offset)
      if (!parsed) return null
      items.push(parsed[0])
      offset = parsed[1]
    }
    return [items, offset]
  }
  throw new RespError(`unexpected RESP type ${kind}`)
}

class RespConnection {
  #socket = null
  #pending = []
  #buffer = Buffer.alloc(0)

  constructor(port, { timeoutMs = 1000 } = {}) {
    this.port = port
    this.timeoutMs = timeoutMs
  }

  /** Sends one command; resolves to its reply, rejects on a Redis error, a timeout or a drop. */
  call(...args) {
    return this.callWithin(this.timeoutMs, ...args)
  }

  callWithin(timeoutMs, ...args) {
    return new Promise((resolve, reject) => {
      const socket = this.#connect()
      const entry = { resolve, reject, timer: null }
      entry.timer = setTimeout(() => this.#drop(new Error(`redis :${this.port} did not answer ${args[0]} within ${timeoutMs} ms`)), timeoutMs)
      this.#pending.push(entry)
      socket.write(encode(args))
    })
  }

  close() {
    this.#drop(new Error('closed'))
  }

  #connect() {
    if (this.#socket) return this.#socket
    const socket = net.connect({ port: this.port, host: '127.0.0.1', noDelay: true })
    socket.unref()
    socket.on('data', (chunk) => this.#receive(chunk))
    socket.on('error', (error) => this.#drop(error))
    socket.on('close', () => this.#drop(new Error(`connection to redis :${this.port} closed`)))
    this.#socket = socket
    this.#buffer = Buffer.alloc(0)
    return socket
  }

  #receive(chunk) {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk
    let offset = 0
    for (;;) {
      const parsed = parse(this.#buffer, offset)
      if (!parsed) break
      offset = parsed[1]
      const entry = this.#pending.shift()
      if (!entry) continue
      clearTimeout(entry.timer)
      if (parsed[0] instanceof RespError) entry.reject(parsed[0])
      else entry.resolve(parsed[0])
    }
    this.#buffer = this.#buffer.subarray(offset)
  }

  #drop(error) {
    const socket = this.#socket
    this.#socket = null
    if (socket) socket.destroy()
    const pending = this.#pending
    this.#pending = []
    for (const entry of pending) {
      clearTimeout(entry.timer)
      entry.reject(error)
    }
  }
}

/** One command on a fresh connection, closed afterwards. */
async function respOnce(port, args, timeoutMs = 1000) {
  const connection = new RespConnection(port, { timeoutMs })
  try {
    return await connection.call(...args)
  } finally {
    connection.close()
  }
}

module.exports = { RespConnection, RespError, respOnce, encode, parse }
