'use strict'

// A real 3-master Redis Cluster on loopback: lock keys and their side keys live in one slot, and
// exclusion, fairness and fencing hold as on one host.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync, fork } = require('node:child_process')
const path = require('node:path')

const { Redlock } = require('..')
const { RedisServer, startServers, sleep } = require('../tools/redis-server')
const { runWorkers } = require('./helpers/workers')
const { eventually } = require('./helpers/waiting')

let nodes
let counter
const cluster = { cluster: true, connectTimeout: 1000, commandTimeout: 1000 }

before(async () => {
  nodes = await startServers(3, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'])
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-yes'], { stdio: 'ignore', timeout: 30000 })
  await eventually(async () => nodes.every((node) => /cluster_state:ok/.test(node.cli('CLUSTER', 'INFO'))), 'the cluster being ready', 400)
  counter = await RedisServer.start()
})

after(async () => {
  await Promise.all([...nodes, counter].map((server) => server.stop()))
})

const urls = () => nodes.map((node) => node.url)
const worker = (options) => [JSON.stringify(urls()), counter.url, String(options.rounds ?? 1), JSON.stringify({ ...options, client: cluster })]

test('locks on keys of every node, side keys in the lock key\'s slot', async () => {
  const locks = new Redlock(urls(), cluster)
  const keys = Array.from({ length: 30 }, (_, i) => `order:${i}`)
  const slots = new Set(keys.map((key) => nodes[0].cli('CLUSTER', 'KEYSLOT', key)))
  assert.ok(slots.size > 20, 'the keys spread over the slots')
  for (const key of keys) {
    const token = await locks.lock(key, 5000)
    assert.ok(token, key)
    assert.equal(await locks.lock(key, 5000), null)
    assert.equal(await locks.unlock(key, token), true)
    // Four keys in one script: a CROSSSLOT error here would mean the side keys left the slot.
    const lock = await locks.acquire(key, { fair: true, ttl: 2000 })
    assert.equal((await locks.inspect(key))[0].holder, lock.token)
    await lock.release()
  }
  await assert.rejects(locks.list('order:*'), { code: 'ERR_RELOCK_UNSUPPORTED' })
  await locks.close()
})

test('4 processes × 50 acquire increments over the cluster: exact, one inside at a time, fences growing', async () => {
  for (const fair of [false, true]) {
    counter.cli('SET', 'counter', '0')
    const results = await runWorkers('acquire-worker.js', 4, worker({ rounds: 50, fair }))
    assert.equal(counter.cli('GET', 'counter'), '200', `fair: ${fair}`)
    assert.ok(results.every((result) => result.maxInside === 1))
    const fences = results.flatMap((result) => result.records).sort((a, b) => a.acquired - b.acquired).map((record) => record.fence)
    for (let i = 1; i < fences.length; i++) assert.ok(fences[i] > fences[i - 1], `fence ${fences[i]} after ${fences[i - 1]}`)
  }
})

test('fair waiters of several processes are served in the order they began, over the cluster', async () => {
  const locks = new Redlock(urls(), cluster)
  const holder = await locks.acquire('contended', { ttl: 10000 })
  const children = [0, 1, 2, 3].map((index) => fork(path.join(__dirname, 'fixtures', 'acquire-worker.js'),
    [...worker({ fair: true, startDelayMs: 150 * index }), String(index)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const results = children.map((child) => new Promise((resolve) => child.on('message', (m) => m.records && resolve(m))))
  await sleep(800)
  await holder.release()
  const records = (await Promise.all(results)).flatMap((result) => result.records).sort((a, b) => a.acquired - b.acquired)
  assert.deepEqual(records.map((record) => record.worker), [0, 1, 2, 3])
  await locks.close()
})

test('cluster settings are checked', () => {
  assert.throws(() => new Redlock(urls(), { cluster: 'yes' }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  assert.throws(() => new Redlock(urls(), { cluster: true, sentinel: { name: 'm' } }), { code: 'ERR_RELOCK_UNSUPPORTED' })
  assert.throws(() => new Redlock(urls(), { cluster: true, replicaAck: { replicas: 1 } }), { code: 'ERR_RELOCK_UNSUPPORTED' })
})
