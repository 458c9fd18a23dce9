'use strict'

// The public JavaScript API. The locking itself happens in the native core (binding.js loads
// it); the files under lib/ add what only JavaScript can do: typed errors with a stable `code`,
// argument checks, AbortSignal, AsyncLocalStorage reentrancy and Symbol.asyncDispose.

const { Redlock } = require('./lib/redlock.js')
const { RelockError } = require('./lib/errors.js')
const { Lock } = require('./lib/lock.js')
const { ReadWriteLock, ReadWriteHandle, Semaphore, PermitHandle } = require('./lib/primitives.js')

// `default` too: node-redlock users write `import Redlock from 'relock'`.
module.exports = { Redlock, RelockError, Lock, ReadWriteLock, ReadWriteHandle, Semaphore, PermitHandle, default: Redlock }
