'use strict'

// relock's errors: every failure reaches the caller as a RelockError with a stable `code`.

class RelockError extends Error {
  constructor(code, message, options) {
    super(message, options)
    this.name = code === 'ABORT_ERR' ? 'AbortError' : 'RelockError'
    this.code = code
  }
}


// A failure thrown by the native core carries relock's code as its `code` already.
function toRelockError(error) {
  if (error instanceof RelockError) return error
  const code = error?.code
  if (typeof code === 'string' && (code.startsWith('ERR_RELOCK_') || code === 'ABORT_ERR')) return new RelockError(code, error.message)
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

function abortError(signal) {
  return new RelockError('ABORT_ERR', 'the wait for the lock was aborted', { cause: signal.reason })
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

// As `call`, for an `fn` that returns a promise settling with a RelockError already: a
// synchronous throw becomes a rejection, with no promise of its own in between.
function rejectingOnThrow(fn) {
  try {
    return fn()
  } catch (error) {
    return Promise.reject(toRelockError(error))
  }
}

module.exports = { RelockError, toRelockError, errorFromRecord, invalid, describe, abortError, call, rejectingOnThrow }
