'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const os = require('node:os')
const fs = require('node:fs')
const { inspect } = require('node:util')

const { Redlock, RelockError } = require('..')
const { RedisServer, freePort, sleep } = require('../tools/redis-server')
const { runWorkers } = require('./helpers/workers')

let server
let locks
const fast = { connectTimeout: 500, commandTimeout: 300 }

before(async () => {
  server = await RedisServer.start()
  locks = new Redlock(server.url, fast)
})

after(async () => {
  await locks.close()
  await server.stop()
})

async function rejectsWith(promise, code, pattern) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof RelockError, `expected a RelockError, got ${error}`)
    assert.equal(error.code, code, error.message)
    if (pattern) assert.match(error.message, pattern)
    return true
  })
}

test('lock sets the key to a fresh token with the ttl, and is not reentrant', async () => {
  const token = await locks.lock('order:42', 5000)
  assert.match(token, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.equal(server.cli('GET', 'order:42'), token)
  const pttl = Number(server.cli('PTTL', 'order:42'))
  assert.ok(pttl > 4000 && pttl <= 5000, `pttl ${pttl}`)
  assert.equal(await locks.lock('order:42', 5000), null, 'a held key is not granted again, even to its holder')
  assert.equal(await locks.unlock('order:42', token), true)
})

test('unlock and extend act only for the holder', async () => {
  const token = await locks.lock('order:43', 5000)
  assert.equal(await locks.unlock('order:43', 'not-the-token'), false)
  assert.equal(await locks.extend('order:43', 'not-the-token', 60000), false)
  assert.equal(server.cli('GET', 'order:43'), token, 'a wrong token leaves the lock alone')
  assert.equal(await locks.extend('order:43', token, 60000), true)
  assert.ok(Number(server.cli('PTTL', 'order:43')) > 50000)
  assert.equal(await locks.unlock('order:43', token), true)
  assert.equal(server.cli('EXISTS', 'order:43'), '0')
  assert.equal(await locks.unlock('order:43', token), false, 'already released')
  assert.equal(await locks.extend('order:43', token, 1000), false, 'released locks cannot be extended')
})

test('an expired lock is free again and its old token is refused', async () => {
  const token = await locks.lock('short', 100)
  await sleep(170)
  assert.equal(await locks.unlock('short', token), false)
  const next = await locks.lock('short', 5000)
  assert.ok(next && next !== token)
  assert.equal(await locks.unlock('short', next), true)
})

test('lockWithValidity tells how long the lock is safe to rely on', async () => {
  const lease = await locks.lockWithValidity('validity', 10000)
  assert.ok(lease.validity > 9800 && lease.validity <= 10000 - 102, `validity ${lease.validity}`)
  assert.equal(await locks.unlock('validity', lease.token), true)
})

test('an array of one URL behaves as the single URL', async () => {
  const one = new Redlock([server.url], fast)
  const token = await one.lock('array-of-one', 5000)
  assert.equal(await locks.lock('array-of-one', 5000), null)
  assert.equal(await locks.unlock('array-of-one', token), true)
  await one.close()
})

test('bad input is refused with a typed error and leaves nothing in Redis', async () => {
  const keysBefore = server.cli('DBSIZE')
  const cases = [
    [() => locks.lock(42, 1000), /key must be a string, got number 42/],
    [() => locks.lock(undefined, 1000), /key must be a string/],
    [() => locks.lock('', 1000), /key must be a non-empty string/],
    [() => locks.lock('k'.repeat(5000), 1000), /key is 5000 bytes long/],
    [() => locks.lock('k', '1000'), /ttl must be a number/],
    [() => locks.lock('k', 0), /ttl must be a positive integer/],
    [() => locks.lock('k', 1), /ttl must be at least 100 ms/],
    [() => locks.lock('k', 99), /ttl must be at least 100 ms/],
    [() => locks.lock('k', -5), /ttl must be a positive integer/],
    [() => locks.lock('k', 1.5), /ttl must be a positive integer/],
    [() => locks.lock('k', NaN), /ttl must be a positive integer/],
    [() => locks.lock('k', Infinity), /ttl must be a positive integer/],
    [() => locks.lock('k', 2 ** 31), /ttl must be at most 2147483647/],
    [() => locks.lock('k', 1000, 'fast'), /options must be an object/],
    [() => locks.lock('k', 1000, { retryCount: -1 }), /retryCount must be an integer/],
    [() => locks.unlock('k', 7), /token must be a string, got number 7/],
    [() => locks.unlock('k', null), /token must be a string, got null/],
    [() => locks.unlock('k', ''), /token must be a non-empty string/],
    [() => locks.extend('k', 'token', 0), /ttl must be a positive integer/],
    [() => locks.extend({}, 'token', 10), /key must be a string, got object/],
  ]
  for (const [call, pattern] of cases) await rejectsWith(call(), 'ERR_RELOCK_INVALID_ARGUMENT', pattern)
  assert.equal(server.cli('DBSIZE'), keysBefore)
})

test('bad constructor arguments throw typed errors', () => {
  const cases = [
    [() => new Redlock(), 'ERR_RELOCK_INVALID_ARGUMENT', /urls must be/],
    [() => new Redlock([]), 'ERR_RELOCK_INVALID_ARGUMENT', /non-empty array/],
    [() => new Redlock([server.url, 5]), 'ERR_RELOCK_INVALID_ARGUMENT', /urls must be/],
    [() => new Redlock('http://127.0.0.1:6379'), 'ERR_RELOCK_INVALID_URL', /unknown scheme 'http'/],
    [() => new Redlock('127.0.0.1:6379'), 'ERR_RELOCK_INVALID_URL', /expected a URL/],
    [() => new Redlock('redis://:hunter2@[::1'), 'ERR_RELOCK_INVALID_URL', /redis:\/\/:\*\*\*@/],
    [() => new Redlock(server.url, { commandTimeout: 0 }), 'ERR_RELOCK_INVALID_ARGUMENT', /commandTimeout must be a positive integer/],
    [() => new Redlock(server.url, { connectTimeout: '2s' }), 'ERR_RELOCK_INVALID_ARGUMENT', /connectTimeout must be a number/],
    [() => new Redlock(server.url, { driftFactor: 0.9 }), 'ERR_RELOCK_INVALID_ARGUMENT', /driftFactor/],
    [() => new Redlock([server.url, server.url]), 'ERR_RELOCK_INVALID_ARGUMENT', /listed twice/],
    [() => new Redlock(server.url, { commandTimout: 500 }), 'ERR_RELOCK_INVALID_ARGUMENT', /options.commandTimout is not an option; did you mean commandTimeout\?/],
    [() => new Redlock(server.url, { tls: { caFile: 'ca.pem' } }), 'ERR_RELOCK_INVALID_ARGUMENT', /options.tls.caFile is not an option/],
    [() => new Redlock(server.url, { replicaAck: { replica: 1 } }), 'ERR_RELOCK_INVALID_ARGUMENT', /did you mean replicas\?/],
    [() => new Redlock(server.url, { sentinel: { name: 'm', nmae: 'x' } }), 'ERR_RELOCK_INVALID_ARGUMENT', /options.sentinel.nmae is not an option/],
  ]
  for (const [make, code, pattern] of cases) {
    assert.throws(make, (error) => {
      assert.ok(error instanceof RelockError)
      assert.equal(error.code, code, error.message)
      assert.match(error.message, pattern)
      assert.doesNotMatch(error.message, /hunter2/)
      return true
    })
  }
})

test('an unreachable host rejects within connectTimeout', async () => {
  const port = await freePort()
  const nobody = new Redlock(`redis://127.0.0.1:${port}`, fast)
  const started = performance.now()
  await rejectsWith(nobody.lock('k', 1000), 'ERR_RELOCK_CONNECTION', new RegExp(`127\\.0\\.0\\.1:${port}`))
  assert.ok(performance.now() - started < 500 + 300 + 200)
  await nobody.close()
})

test('acquire on hosts unreachable from the start fails at once with their error, counted as failed', async () => {
  const ports = [await freePort(), await freePort(), await freePort()]
  for (const urls of [[`redis://127.0.0.1:${ports[0]}`], ports.map((port) => `redis://127.0.0.1:${port}`)]) {
    const nobody = new Redlock(urls, fast)
    const started = performance.now()
    const error = await nobody.acquire('k', { waitTimeout: 10_000 }).then(() => null, (e) => e)
    const took = performance.now() - started
    assert.equal(error.code, urls.length === 1 ? 'ERR_RELOCK_CONNECTION' : 'ERR_RELOCK_NO_QUORUM', error.message)
    assert.ok(took < 1500, `took ${Math.round(took)} ms of a 10 s wait`)
    assert.equal(nobody.stats().failed, 1)
    assert.equal(nobody.stats().waitTimedOut, 0)
    await nobody.close()
  }
})

test('a wait that times out while its host fails carries the failure as its cause', async () => {
  const host = await RedisServer.start()
  const locks = new Redlock(host.url, fast)
  try {
    host.cli('SET', 'cause', 'someone', 'PX', '600')
    const waiting = locks.acquire('cause', { waitTimeout: 1500 }).then(() => null, (e) => e)
    await sleep(100)
    await host.kill()
    const error = await waiting
    assert.equal(error.code, 'ERR_RELOCK_WAIT_TIMEOUT')
    assert.ok(error.cause, 'no cause')
    assert.ok(['ERR_RELOCK_CONNECTION', 'ERR_RELOCK_TIMEOUT'].includes(error.cause.code), error.cause.code)
    assert.match(error.cause.message, new RegExp(`127\\.0\\.0\\.1:${host.port}`))
  } finally {
    await locks.close()
    await host.stop()
  }
})

test('a host that accepts but never answers rejects within the bounds', async () => {
  // A listening socket that never speaks Redis: the connection handshake cannot finish.
  const net = require('node:net')
  const silent = net.createServer(() => {}).listen(0, '127.0.0.1')
  await new Promise((resolve) => silent.once('listening', resolve))
  const client = new Redlock(`redis://127.0.0.1:${silent.address().port}`, fast)
  const started = performance.now()
  await assert.rejects(client.lock('k', 1000), (error) => ['ERR_RELOCK_TIMEOUT', 'ERR_RELOCK_CONNECTION'].includes(error.code))
  const spent = performance.now() - started
  assert.ok(spent < 500 + 300 + 300, `took ${spent} ms`)
  await client.close()
  silent.close()
})

test('a wrong password rejects with ERR_RELOCK_AUTH and never shows the password', async () => {
  const guarded = await RedisServer.start(['--requirepass', 'right-secret'])
  try {
    const wrong = new Redlock(`redis://:wrong-secret@127.0.0.1:${guarded.port}`, fast)
    await rejectsWith(wrong.lock('k', 1000), 'ERR_RELOCK_AUTH')
    await wrong.lock('k', 1000).catch((error) => assert.doesNotMatch(`${error.message} ${error.stack}`, /wrong-secret/))
    assert.doesNotMatch(inspect(wrong), /wrong-secret/)
    await wrong.close()

    const right = new Redlock(`redis://:right-secret@127.0.0.1:${guarded.port}`, fast)
    const token = await right.lock('k', 1000)
    assert.ok(token)
    assert.doesNotMatch(inspect(right), /right-secret/)
    await right.close()
  } finally {
    await guarded.stop()
  }
})

test('a Unix socket URL works', async () => {
  const socket = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'relock-sock-')), 'redis.sock')
  const viaSocket = await RedisServer.start(['--unixsocket', socket, '--unixsocketperm', '700'])
  try {
    for (const url of [`unix://${socket}`, `redis+unix://${socket}`]) {
      const client = new Redlock(url, fast)
      const token = await client.lock('sock', 1000)
      assert.equal(viaSocket.cli('GET', 'sock'), token)
      assert.equal(await client.unlock('sock', token), true)
      await client.close()
    }
  } finally {
    await viaSocket.stop()
  }
})

test('a database number in the URL is honoured', async () => {
  const db3 = new Redlock(`${server.url}/3`, fast)
  const token = await db3.lock('in-db-3', 1000)
  assert.equal(server.cli('-n', '3', 'GET', 'in-db-3'), token)
  assert.equal(server.cli('EXISTS', 'in-db-3'), '0')
  await db3.close()
})

test('concurrent calls share one connection', async () => {
  const shared = new Redlock(server.url, fast)
  await shared.lock('warm-up', 1000)
  const before = Number(server.cli('INFO', 'clients').match(/connected_clients:(\d+)/)[1])
  const tokens = await Promise.all(Array.from({ length: 200 }, (_, i) => shared.lock(`many:${i}`, 5000)))
  assert.equal(new Set(tokens).size, 200)
  const during = Number(server.cli('INFO', 'clients').match(/connected_clients:(\d+)/)[1])
  assert.equal(during, before, '200 concurrent calls opened no extra connection')
  const released = await Promise.all(tokens.map((token, i) => shared.unlock(`many:${i}`, token)))
  assert.ok(released.every(Boolean))
  await shared.close()
})

test('many calls made at once all settle, also those refused before any request goes out', async () => {
  // On one host the calls of a turn leave in batches, and sending a batch settles what has
  // finished, a refused call among them, before the call that filled the batch returns.
  const outcomes = await Promise.race([
    Promise.all(Array.from({ length: 40 }, (_, i) => {
      const key = i % 2 === 1 ? '' : `batch:${i}`
      return locks.lock(key, 5000).then((token) => typeof token, (error) => error.code)
    })),
    sleep(5000).then(() => 'some calls never settled'),
  ])
  assert.deepEqual(outcomes, Array.from({ length: 40 }, (_, i) => (i % 2 === 1 ? 'ERR_RELOCK_INVALID_ARGUMENT' : 'string')))
})

test('scripts are reloaded after SCRIPT FLUSH, and the client recovers from a restart by itself', async () => {
  const own = await RedisServer.start()
  const client = new Redlock(own.url, fast)
  try {
    const token = await client.lock('restart', 5000)
    own.cli('SCRIPT', 'FLUSH')
    assert.equal(await client.extend('restart', token, 5000), true)
    await own.kill()
    await rejectsWith(client.lock('restart', 5000), 'ERR_RELOCK_CONNECTION')
    await own.restart()
    let token2 = null
    for (let i = 0; i < 100 && !token2; i++) {
      token2 = await client.lock('restart', 5000).catch(() => null)
      if (!token2) await sleep(20)
    }
    assert.ok(token2, 'the same client locks again once Redis is back')
    assert.equal(await client.unlock('restart', token2), true, 'scripts load again on the new server')
  } finally {
    await client.close()
    await own.stop()
  }
})

test('after close, calls reject with ERR_RELOCK_CLOSED', async () => {
  const client = new Redlock(server.url, fast)
  const token = await client.lock('closing', 1000)
  await client.close()
  assert.equal(client.closed, true)
  await rejectsWith(client.lock('closing-2', 1000), 'ERR_RELOCK_CLOSED')
  await rejectsWith(client.unlock('closing', token), 'ERR_RELOCK_CLOSED')
  await rejectsWith(client.extend('closing', token, 1000), 'ERR_RELOCK_CLOSED')
  assert.equal(server.cli('EXISTS', 'closing-2'), '0')
  await client.close()
})

test('a client that is never closed does not keep the process alive', () => {
  const script = `
    const { Redlock } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const locks = new Redlock(${JSON.stringify(server.url)})
    locks.lock('left-open', 60000).then((token) => console.log(token ? 'locked' : 'busy'))
  `
  const started = Date.now()
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 })
  assert.equal(result.status, 0, result.stderr)
  assert.equal(result.stdout.trim(), 'locked')
  assert.ok(Date.now() - started < 5000, 'exited promptly')
})

test('4 processes × 200 read-modify-write increments under the lock lose nothing', async () => {
  server.cli('SET', 'counter', '0')
  await runWorkers('counter-worker.js', 4, [JSON.stringify([server.url]), server.url, '200', 'lock'])
  assert.equal(server.cli('GET', 'counter'), '800')
})
