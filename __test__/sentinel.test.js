'use strict'

// A master with a replica, watched by three real Sentinels: relock finds the master through
// them and follows the failover to the replica when the master dies.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { Redlock } = require('..')
const { RedisServer, freePort, sleep } = require('../tools/redis-server')
const { eventually } = require('./helpers/waiting')

let master
let replica
const sentinels = []

async function startSentinel(masterPort) {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'relock-sentinel-'))
  const config = path.join(dir, 'sentinel.conf')
  fs.writeFileSync(config, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor mymaster 127.0.0.1 ${masterPort} 2`,
    'sentinel down-after-milliseconds mymaster 1000',
    'sentinel failover-timeout mymaster 4000',
  ].join('\n') + '\n')
  const child = spawn('redis-server', [config, '--sentinel'], { stdio: 'ignore' })
  const sentinel = { port, dir, child, url: `redis://127.0.0.1:${port}` }
  await eventually(async () => {
    const { execFileSync } = require('node:child_process')
    return execFileSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('PONG')
  }, `sentinel on ${port} answering`)
  return sentinel
}

function sentinelCli(sentinel, ...args) {
  return require('node:child_process').execFileSync('redis-cli', ['-p', String(sentinel.port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
}

before(async () => {
  master = await RedisServer.start()
  replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(master.port)])
  for (let i = 0; i < 3; i++) sentinels.push(await startSentinel(master.port))
  // The Sentinels must have found the replica and each other before a failover can happen.
  await eventually(async () => sentinels.every((s) => /slave|replica/.test(sentinelCli(s, 'SENTINEL', 'replicas', 'mymaster')) && Number(sentinelCli(s, 'SENTINEL', 'master', 'mymaster').match(/num-other-sentinels\n(\d+)/)?.[1]) === 2), 'the sentinels knowing the replica and each other', 400)
})

after(async () => {
  for (const sentinel of sentinels) {
    sentinel.child.kill('SIGKILL')
    fs.rmSync(sentinel.dir, { recursive: true, force: true })
  }
  await replica.stop()
  await master.stop()
})

test('the master is found through the sentinels, and followed through a failover', async () => {
  const locks = new Redlock(sentinels.map((s) => s.url), { sentinel: { name: 'mymaster' }, connectTimeout: 500, commandTimeout: 500 })
  assert.deepEqual(locks.hosts, ["sentinel master 'mymaster'"])
  const token = await locks.lock('through-sentinel', 60000)
  assert.equal(master.cli('GET', 'through-sentinel'), token, 'the lock is on the master')
  assert.equal(await locks.unlock('through-sentinel', token), true)

  // The master dies; the Sentinels agree it is down after a second and promote the replica.
  await master.kill()
  await eventually(async () => /^master/.test(replica.cli('ROLE')), 'the replica becoming master', 400)
  const after = await eventually(() => locks.lock('after-failover', 60000), 'a lock on the new master', 300)
  assert.equal(replica.cli('GET', 'after-failover'), after, 'the lock is on the new master')
  const lock = await locks.acquire('handle-after-failover', { ttl: 2000 })
  assert.equal(replica.cli('GET', 'handle-after-failover'), lock.token)
  assert.equal(await lock.release(), true)
  await locks.close()
})

test('sentinel settings are checked', () => {
  assert.throws(() => new Redlock(sentinels[0].url, { sentinel: { name: 5 } }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  assert.throws(() => new Redlock('rediss://127.0.0.1:1', { sentinel: { name: 'm' }, tls: { dangerouslyAcceptAnyCertificate: true } }), { code: 'ERR_RELOCK_UNSUPPORTED' })
})
