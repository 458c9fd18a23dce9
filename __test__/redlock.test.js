'use strict'

const { test, before, after, beforeEach } = require('node:test')
const assert = require('node:assert/strict')

const { Redlock, RelockError } = require('..')
const { startServers, sleep } = require('../tools/redis-server')
const { runWorkers } = require('./helpers/workers')
const { eventually } = require('./helpers/waiting')

let three
let five
const fast = { connectTimeout: 300, commandTimeout: 300 }

before(async () => {
  ;[three, five] = await Promise.all([startServers(3), startServers(5)])
})

after(async () => {
  await Promise.all([...three, ...five].map((server) => server.stop()))
})

beforeEach(async () => {
  for (const server of [...three, ...five]) {
    if (!server.process) await server.restart()
    server.cli('FLUSHALL')
  }
})

const urls = (servers) => servers.map((server) => server.url)

function holders(servers, key) {
  return servers.map((server) => (server.process ? server.cli('GET', key) : 'down'))
}

test('the lock is set on every host with the same token and released on every host', async () => {
  const locks = new Redlock(urls(three), fast)
  const token = await locks.lock('invoice:7', 10000)
  assert.ok(token)
  await eventually(async () => holders(three, 'invoice:7').every((value) => value === token), 'all three hosts hold the token')
  assert.equal(await locks.lock('invoice:7', 10000), null)
  assert.equal(await locks.extend('invoice:7', token, 20000), true)
  for (const server of three) assert.ok(Number(server.cli('PTTL', 'invoice:7')) > 15000)
  assert.equal(await locks.unlock('invoice:7', token), true)
  await eventually(async () => holders(three, 'invoice:7').every((value) => value === ''), 'all hosts released')
  await locks.close()
})

test('a key held on a majority is busy; held on a minority it is not', async () => {
  const locks = new Redlock(urls(three), fast)
  three[0].cli('SET', 'contended', 'other-client', 'PX', '10000')
  const token = await locks.lock('contended', 5000)
  assert.ok(token, 'one foreign host out of three does not block a quorum')
  assert.equal(await locks.unlock('contended', token), true)
  three[1].cli('SET', 'contended', 'other-client', 'PX', '10000')
  assert.equal(await locks.lock('contended', 5000), null, 'two of three held elsewhere: busy')
  assert.deepEqual(holders(three, 'contended'), ['other-client', 'other-client', ''], 'the failed attempt left nothing behind')
  await locks.close()
})

test('validity is ttl less the elapsed time and the drift margin', async () => {
  const locks = new Redlock(urls(five), { ...fast, driftFactor: 0.1 })
  const lease = await locks.lockWithValidity('validity', 10000)
  assert.ok(lease.validity <= 10000 - 1000 - 2 && lease.validity > 8900, `validity ${lease.validity}`)
  await locks.close()
})

test('4 processes × 200 increments over 3 hosts lose nothing', async () => {
  three[0].cli('SET', 'counter', '0')
  await runWorkers('counter-worker.js', 4, [JSON.stringify(urls(three)), three[0].url, '200', 'lock'])
  assert.equal(three[0].cli('GET', 'counter'), '800')
})

test('with a minority killed, locks keep working and stay fast', async () => {
  for (const [servers, killed] of [[three, 1], [five, 2]]) {
    const locks = new Redlock(urls(servers), fast)
    assert.ok(await locks.lock('warm', 1000))
    for (const server of servers.slice(0, killed)) await server.kill()
    const latencies = []
    for (let i = 0; i < 20; i++) {
      const started = performance.now()
      const token = await locks.lock(`minority:${i}`, 5000)
      latencies.push(performance.now() - started)
      assert.ok(token, `lock ${i} with ${killed} of ${servers.length} hosts down`)
      assert.equal(await locks.unlock(`minority:${i}`, token), true)
    }
    const slowest = Math.max(...latencies)
    assert.ok(slowest < fast.commandTimeout, `slowest lock took ${slowest.toFixed(1)} ms`)
    await locks.close()
  }
})

test('with a majority killed, lock fails with ERR_RELOCK_NO_QUORUM naming each host, and leaves nothing', async () => {
  for (const [servers, killed] of [[three, 2], [five, 3]]) {
    const locks = new Redlock(urls(servers), fast)
    for (const server of servers.slice(0, killed)) await server.kill()
    const started = performance.now()
    await assert.rejects(locks.lock('majority', 5000), (error) => {
      assert.ok(error instanceof RelockError)
      assert.equal(error.code, 'ERR_RELOCK_NO_QUORUM', error.message)
      for (const server of servers.slice(0, killed)) assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${server.port}.*ERR_RELOCK_CONNECTION`))
      assert.match(error.message, new RegExp(`${servers.length - killed} of ${servers.length} hosts answered`))
      return true
    })
    const spent = performance.now() - started
    assert.ok(spent < fast.connectTimeout + fast.commandTimeout, `took ${spent.toFixed(0)} ms`)
    // The partial lock is undone in the background (the rejection waits for no host), promptly.
    const rejected = performance.now()
    await eventually(async () => servers.slice(killed).every((server) => server.cli('EXISTS', 'majority') === '0'), 'released on the live hosts')
    const undone = performance.now() - rejected
    assert.ok(undone < fast.commandTimeout, `released ${undone.toFixed(0)} ms after the rejection`)

    // Back up: the same client recovers without being recreated.
    for (const server of servers.slice(0, killed)) await server.restart()
    const token = await eventually(() => locks.lock('majority', 5000), 'locking after the restart')
    assert.equal(await locks.unlock('majority', token), true)
    await locks.close()
  }
})

test('extend and unlock with a majority down reject instead of pretending', async () => {
  const locks = new Redlock(urls(three), fast)
  const token = await locks.lock('extend-down', 10000)
  await three[0].kill()
  assert.equal(await locks.extend('extend-down', token, 10000), true, 'a minority down still renews')
  await three[1].kill()
  await assert.rejects(locks.extend('extend-down', token, 10000), { code: 'ERR_RELOCK_NO_QUORUM' })
  await assert.rejects(locks.unlock('extend-down', token), { code: 'ERR_RELOCK_NO_QUORUM' })
  await locks.close()
})

test('a host that is down when the client starts does not stop a majority', async () => {
  await three[2].kill()
  const locks = new Redlock(urls(three), fast)
  const token = await locks.lock('started-degraded', 5000)
  assert.ok(token)
  await three[2].restart()
  assert.equal(await locks.unlock('started-degraded', token), true)
  const again = await eventually(async () => {
    const t = await locks.lock('started-degraded', 5000)
    const onAll = t && holders(three, 'started-degraded').every((value) => value === t)
    if (t && !onAll) await locks.unlock('started-degraded', t)
    return onAll ? t : null
  }, 'the restarted host taking part again')
  assert.ok(again)
  await locks.close()
})

test('a paused host does not delay the answer', async () => {
  const locks = new Redlock(urls(three), { connectTimeout: 1000, commandTimeout: 1000 })
  assert.ok(await locks.lock('warm', 1000))
  three[0].signal('SIGSTOP')
  try {
    const started = performance.now()
    const token = await locks.lock('paused-minority', 5000)
    const spent = performance.now() - started
    assert.ok(token)
    assert.ok(spent < 200, `answered after ${spent.toFixed(1)} ms, without waiting for the paused host`)
  } finally {
    three[0].signal('SIGCONT')
  }
  await locks.close()
})

test('a quorum that answers after the ttl ran out is a failure, and the lock is released', async () => {
  const locks = new Redlock(urls(three), { connectTimeout: 2000, commandTimeout: 2000 })
  assert.ok(await locks.lock('warm', 1000))
  three[0].signal('SIGSTOP')
  three[1].signal('SIGSTOP')
  const attempt = locks.lock('late', 200)
  await sleep(400)
  three[0].signal('SIGCONT')
  three[1].signal('SIGCONT')
  await assert.rejects(attempt, (error) => {
    assert.equal(error.code, 'ERR_RELOCK_VALIDITY_EXPIRED', error.message)
    assert.match(error.message, /no time was left on its 200 ms ttl/)
    return true
  })
  assert.deepEqual(holders(three, 'late'), ['', '', ''])
  await locks.close()
})

test('retries spread out with jitter and respect the time budget', async () => {
  const locks = new Redlock(urls(three), { ...fast, retryCount: 1000, retryDelay: 20, retryJitter: 20, retryTimeout: 300 })
  const holder = await locks.lock('budget', 10000)
  const started = performance.now()
  assert.equal(await locks.lock('budget', 1000), null)
  const spent = performance.now() - started
  assert.ok(spent >= 250 && spent < 700, `spent ${spent.toFixed(0)} ms`)
  setTimeout(() => locks.unlock('budget', holder), 100)
  const token = await locks.lock('budget', 1000, { retryCount: 50, retryDelay: 10, retryJitter: 10 })
  assert.ok(token, 'a retry takes the lock once it is released')
  await locks.close()
})

test('one server given under two names is found out by its run id, and the client refuses to go on', async () => {
  const [a, b] = three
  const locks = new Redlock([a.url, `redis://localhost:${a.port}`, b.url], fast)
  try {
    await locks.lock('twice', 1000).catch(() => null) // the first call starts the check
    const error = await eventually(async () => {
      const outcome = await locks.lock('twice', 1000).then(() => null, (e) => e)
      return outcome && outcome.code === 'ERR_RELOCK_INVALID_ARGUMENT' ? outcome : null
    }, 'refusing the client')
    assert.match(error.message, new RegExp(`redis://127\\.0\\.0\\.1:${a.port} and redis://localhost:${a.port} are the same Redis server`))
    await assert.rejects(locks.acquire('twice', { waitTimeout: 100 }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  } finally {
    await locks.close()
  }
})

test('inspect, list and the relock command report per host when one host is down', async () => {
  const hosts = await startServers(3)
  const locks = new Redlock(hosts.map((h) => h.url), fast)
  const cli = require('node:path').join(__dirname, '..', 'bin', 'relock.js')
  const { spawnSync } = require('node:child_process')
  try {
    const token = await locks.lock('per-host', 30_000)
    await hosts[2].kill()
    const states = await locks.inspect('per-host')
    assert.deepEqual(states.map((state) => state.holder), [token, token, null])
    assert.deepEqual(states.map((state) => state.error?.code ?? null), [null, null, 'ERR_RELOCK_CONNECTION'])
    const keys = await locks.list('per-*')
    assert.deepEqual([...keys], ['per-host'])
    assert.deepEqual(keys.failedHosts.map(({ host, error }) => [host, error.code]), [[hosts[2].url, 'ERR_RELOCK_CONNECTION']])
    const urls = hosts.flatMap((h) => ['--url', h.url])
    for (const command of [['inspect', 'per-host'], ['list', 'per-*']]) {
      const run = spawnSync(process.execPath, [cli, ...command, ...urls], { encoding: 'utf8' })
      assert.equal(run.status, 1, run.stderr)
      assert.match(run.stdout, new RegExp(token), 'the answering hosts are shown')
      assert.match(run.stderr, new RegExp(`${hosts[2].url.replace(/[.]/g, '\\.')} did not answer`))
    }
    assert.match(spawnSync(process.execPath, [cli, 'inspect', 'per-host', ...urls], { encoding: 'utf8' }).stdout, /\(unreachable: ERR_RELOCK_CONNECTION\)/)
    await Promise.all(hosts.slice(0, 2).map((h) => h.kill()))
    await assert.rejects(locks.inspect('per-host'), { code: 'ERR_RELOCK_NO_QUORUM' })
    await assert.rejects(locks.list('per-*'), { code: 'ERR_RELOCK_NO_QUORUM' })
  } finally {
    await locks.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})
