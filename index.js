'use strict'

// The public JavaScript API. The locking itself happens in the native core (binding.js loads
// it); this file adds what only JavaScript can do: typed errors with a stable `code`, argument
// type checks, AbortSignal, AsyncLocalStorage reentrancy and Symbol.asyncDispose.

const { inspect } = require('node:util')
const { NativeClient } = require('./binding.js')

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
}

function expectNumber(name, value) {
  if (typeof value !== 'number') throw invalid(`${name} must be a number of milliseconds, got ${describe(value)}`)
}

function expectOptions(name, value, fields) {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`${name} must be an object, got ${describe(value)}`)
  for (const [field, type] of Object.entries(fields)) {
    const given = value[field]
    if (given !== undefined && typeof given !== type) {
      throw invalid(`${name}.${field} must be a ${type}, got ${describe(given)}`)
    }
  }
  return value
}

const CLIENT_OPTIONS = {
  connectTimeout: 'number',
  commandTimeout: 'number',
  driftFactor: 'number',
  retryCount: 'number',
  retryDelay: 'number',
  retryJitter: 'number',
  retryTimeout: 'number',
}
const LOCK_OPTIONS = { retryCount: 'number', retryDelay: 'number', retryJitter: 'number', retryTimeout: 'number' }

// Runs a native call so that bad input and native failures always come back as a rejected
// promise carrying a RelockError, never as a synchronous throw.
async function call(fn) {
  try {
    return await fn()
  } catch (error) {
    throw toRelockError(error)
  }
}

class Redlock {
  #native

  /**
   * @param {string | string[]} urls one Redis URL, or several independent masters (Redlock)
   * @param {object} [options]
   */
  constructor(urls, options) {
    const list = typeof urls === 'string' ? [urls] : urls
    if (!Array.isArray(list) || list.length === 0 || !list.every((url) => typeof url === 'string')) {
      throw invalid(`urls must be a Redis URL string or a non-empty array of them, got ${describe(urls)}`)
    }
    expectOptions('options', options, CLIENT_OPTIONS)
    try {
      this.#native = new NativeClient(list, options ?? undefined)
    } catch (error) {
      throw toRelockError(error)
    }
  }

  /** Redis hosts by address, without credentials. */
  get hosts() {
    return this.#native.hostLabels
  }

  get closed() {
    return this.#native.closed
  }

  lock(key, ttl, options) {
    return call(() => {
      expectString('key', key)
      expectNumber('ttl', ttl)
      return this.#native.lock(key, ttl, expectOptions('options', options, LOCK_OPTIONS))
    })
  }

  lockWithValidity(key, ttl, options) {
    return call(() => {
      expectString('key', key)
      expectNumber('ttl', ttl)
      return this.#native.lockWithValidity(key, ttl, expectOptions('options', options, LOCK_OPTIONS))
    })
  }

  extend(key, token, ttl) {
    return call(() => {
      expectString('key', key)
      expectString('token', token)
      expectNumber('ttl', ttl)
      return this.#native.extend(key, token, ttl)
    })
  }

  unlock(key, token) {
    return call(() => {
      expectString('key', key)
      expectString('token', token)
      return this.#native.unlock(key, token)
    })
  }

  async close() {
    this.#native.close()
  }

  [inspect.custom]() {
    return `Redlock { hosts: ${inspect(this.hosts)}, closed: ${this.closed} }`
  }
}

module.exports = { Redlock, RelockError }
