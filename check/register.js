'use strict'

// The storage the critical sections protect, on its own redis-server that is never faulted:
// - a fenced register per lock key, which accepts a write only with a fence greater than the
//   last one it saw (or the same fence from the same token: one holder writing again), so a
//   stale holder's write is refused and shows up;
// - a plain read-modify-write counter per lock key (GET, a short pause, SET), whose lost
//   updates show two holders in the critical section at once.

const { RespConnection } = require('./resp')

const FENCED_WRITE = `
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '-1')
local fence = tonumber(ARGV[1])
if fence > stored or (fence == stored and redis.call('HGET', KEYS[1], 'token') == ARGV[2]) then
  redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'token', ARGV[2], 'value', ARGV[3])
  return {1, stored}
end
return {0, stored, redis.call('HGET', KEYS[1], 'token')}
`

class Register {
  constructor(port) {
    this.connection = new RespConnection(port, { timeoutMs: 2000 })
  }

  /** Resolves to { accepted, storedFence, storedToken }. */
  async fencedWrite(lockKey, fence, token, value) {
    const [accepted, storedFence, storedToken] = await this.connection.call('EVAL', FENCED_WRITE, 1, `reg:${lockKey}`, fence, token, value)
    return { accepted: accepted === 1, storedFence, storedToken: storedToken ?? null }
  }

  async readCounter(lockKey) {
    return Number((await this.connection.call('GET', `ctr:${lockKey}`)) ?? 0)
  }

  async writeCounter(lockKey, value) {
    await this.connection.call('SET', `ctr:${lockKey}`, value)
  }

  close() {
    this.connection.close()
  }
}

module.exports = { Register, FENCED_WRITE }
