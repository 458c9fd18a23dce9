'use strict'

// relock keeps a lock key's value a plain token set with SET NX PX, so it and the plain ioredis
// recipe (SET key token EX ttl NX to lock, a Lua compare-and-delete to unlock) exclude each
// other on the same keys.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { randomUUID } = require('node:crypto')
const Redis = require('ioredis')

const { Redlock } = require('..')
const { RedisServer } = require('../tools/redis-server')

let server
let redis
let locks

before(async () => {
  server = await RedisServer.start()
  redis = new Redis(server.url)
  redis.defineCommand('unlock', {
    numberOfKeys: 1,
    lua: 'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end',
  })
  locks = new Redlock(server.url)
})

after(async () => {
  await locks.close()
  redis.disconnect()
  await server.stop()
})

test('a lock taken with the ioredis recipe keeps relock out until it is unlocked', async () => {
  const value = randomUUID()
  assert.equal(await redis.set('shared:1', value, 'EX', 5, 'NX'), 'OK')
  assert.equal(await locks.lock('shared:1', 5000), null)
  await assert.rejects(locks.acquire('shared:1', { waitTimeout: 100 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
  assert.equal(await locks.unlock('shared:1', randomUUID()), false, 'relock does not release a lock it does not hold')
  assert.equal(await redis.unlock('shared:1', value), 1)
  const token = await locks.lock('shared:1', 5000)
  assert.ok(token)
  assert.equal(await locks.unlock('shared:1', token), true)
})

test('a lock taken with relock keeps the ioredis recipe out until relock releases it', async () => {
  for (const take of [(key) => locks.lock(key, 5000), async (key) => (await locks.acquire(key)).token]) {
    const key = `shared:${randomUUID()}`
    const token = await take(key)
    assert.equal(await redis.get(key), token, 'the value is the plain token')
    assert.equal(await redis.set(key, randomUUID(), 'EX', 5, 'NX'), null)
    assert.equal(await redis.unlock(key, randomUUID()), 0)
    assert.equal(await redis.unlock(key, token), 1, 'the recipe can release with the token, as it expects')
    assert.equal(await redis.set(key, randomUUID(), 'EX', 5, 'NX'), 'OK')
  }
})
