'use strict'

// Failover safety for a master with replicas: wait until replicas copied each new lock.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')

const { Redlock } = require('..')
const { RedisServer, sleep } = require('../tools/redis-server')

let master
let replica

before(async () => {
  master = await RedisServer.start()
  replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(master.port)])
  for (let i = 0; i < 250 && !/master_link_status:up/.test(replica.cli('INFO', 'replication')); i++) await sleep(20)
  assert.match(replica.cli('INFO', 'replication'), /master_link_status:up/)
})

after(async () => {
  await replica.stop()
  await master.stop()
})

test('with enough replicas, the lock is granted once a replica has it', async () => {
  const locks = new Redlock(master.url, { replicaAck: { replicas: 1, timeout: 200 } })
  const token = await locks.lock('replicated', 5000)
  assert.ok(token)
  assert.equal(replica.cli('GET', 'replicated'), token, 'the replica had it before lock() answered')
  const lock = await locks.acquire('replicated-handle')
  assert.equal(replica.cli('GET', 'replicated-handle'), lock.token)
  await lock.release()
  const fair = await locks.acquire('replicated-fair', { fair: true })
  assert.equal(replica.cli('GET', 'replicated-fair'), fair.token)
  await fair.release()
  await locks.close()
})

test("policy 'fail': too few replicas release the lock and reject, naming how many acknowledged", async () => {
  const locks = new Redlock(master.url, { replicaAck: { replicas: 2, timeout: 100, policy: 'fail' } })
  for (const attempt of [() => locks.lock('under-replicated', 5000), () => locks.acquire('under-replicated', { waitTimeout: 1000 }), () => locks.acquire('under-replicated', { fair: true })]) {
    await assert.rejects(attempt(), (error) => {
      assert.equal(error.code, 'ERR_RELOCK_REPLICATION')
      assert.match(error.message, /1 of 2 replicas acknowledged within 100 ms/)
      return true
    })
    assert.equal(master.cli('EXISTS', 'under-replicated'), '0', 'released again')
  }
  await locks.close()
})

test("policy 'warn': the lock is kept and the shortfall reported", async () => {
  const locks = new Redlock(master.url, { replicaAck: { replicas: 2, timeout: 50, policy: 'warn' } })
  const reported = new Promise((resolve) => locks.once('replication', resolve))
  const token = await locks.lock('warned', 5000)
  assert.ok(token)
  const { error } = await reported
  assert.equal(error.code, 'ERR_RELOCK_REPLICATION')
  assert.match(error.message, /1 of 2 replicas/)
  await locks.close()
})

test('replicaAck settings are checked', () => {
  assert.throws(() => new Redlock(master.url, { commandTimeout: 100, replicaAck: { replicas: 1, timeout: 100 } }), /must be shorter than commandTimeout/)
  assert.throws(() => new Redlock(master.url, { replicaAck: { replicas: 0 } }), /at least 1/)
  assert.throws(() => new Redlock(master.url, { replicaAck: { replicas: 1, policy: 'maybe' } }), /'fail', 'warn' or 'off'/)
  assert.throws(() => new Redlock(master.url, { replicaAck: { replicas: '1' } }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  new Redlock(master.url, { replicaAck: { replicas: 3, policy: 'off' } }).close()
})
