'use strict'

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const path = require('node:path')

const { Redlock } = require('..')
const { RedisServer, sleep } = require('../tools/redis-server')
const { lostWithin, eventually } = require('./helpers/waiting')

let server
let locks

before(async () => {
  server = await RedisServer.start()
  locks = new Redlock(server.url)
})

after(async () => {
  await locks.close()
  await server.stop()
})

test('events: acquired with the wait, extended, released, timeout, lost', async () => {
  const events = []
  for (const name of ['acquired', 'extended', 'released', 'timeout', 'lost']) locks.on(name, (detail) => events.push([name, detail]))
  const first = await locks.acquire('observed', { ttl: 1000 })
  const waiting = locks.acquire('observed', { ttl: 200, watchdog: false })
  await sleep(50)
  await first.extend(2000)
  await first.release()
  const second = await waiting
  await assert.rejects(locks.acquire('observed', { waitTimeout: 20 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
  await sleep(300) // the second lock's lease runs out without a watchdog
  const names = events.map(([name]) => name)
  // The waiter may hear of its lock before the releasing call has returned: those two can swap.
  assert.deepEqual(names.slice(0, 2), ['acquired', 'extended'])
  assert.deepEqual(names.slice(2, 4).sort(), ['acquired', 'released'])
  assert.deepEqual(names.slice(4), ['timeout', 'lost'])
  const detail = (name, fence) => events.find(([n, d]) => n === name && d.fence === fence)[1]
  const acquiredAfterWait = detail('acquired', second.fence)
  assert.equal(acquiredAfterWait.key, 'observed')
  assert.ok(acquiredAfterWait.waitedMs >= 40, `waited ${acquiredAfterWait.waitedMs} ms`)
  assert.ok(detail('released', first.fence).heldMs >= 40)
  assert.equal(detail('lost', second.fence).error.code, 'ERR_RELOCK_LOCK_LOST')
  assert.equal(second.isValid(), false)
  locks.removeAllListeners()
})

test('a throwing listener does not break the lock', async () => {
  locks.on('acquired', () => { throw new Error('listener bug') })
  const warnings = []
  const onWarning = (warning) => warnings.push(warning.message)
  process.on('warning', onWarning)
  const lock = await locks.acquire('listener-bug')
  assert.equal(await lock.release(), true)
  await sleep(10)
  process.off('warning', onWarning)
  locks.removeAllListeners()
  assert.ok(warnings.some((message) => /listener threw: listener bug/.test(message)))
})

test('stats count what happened', async () => {
  const client = new Redlock(server.url)
  const token = await client.lock('counted', 5000)
  assert.equal(await client.lock('counted', 5000), null)
  await client.unlock('counted', token)
  const lock = await client.acquire('counted', { ttl: 150 })
  await sleep(200) // at least one renewal
  await lock.release()
  await client.acquire('never', { signal: AbortSignal.timeout(20), waitTimeout: 5000 }).catch(() => {})
  await client.lock('x', 1).catch(() => {})
  const stats = client.stats()
  await client.close()
  assert.equal(stats.locked, 1)
  assert.equal(stats.busy, 1)
  assert.equal(stats.unlocked, 1)
  assert.equal(stats.acquired, 2)
  assert.equal(stats.released, 1)
  assert.ok(stats.renewed >= 1)
  assert.equal(stats.aborted, 0, 'the second acquire was not blocked, so it got the lock')
})

test('inspect shows holder, ttl, fence and the fair queue; list scans; forceRelease hands over', async () => {
  const holder = await locks.acquire('inspected', { ttl: 900 })
  const waiter = locks.acquire('inspected', { fair: true, ttl: 4000 })
  await sleep(50)
  const [state] = await locks.inspect('inspected')
  assert.equal(state.holder, holder.token)
  assert.ok(state.ttl > 700)
  assert.equal(state.fence, holder.fence)
  assert.equal(state.waiters.length, 1)
  assert.equal(state.waiters[0].ttl, 4000)
  assert.ok(state.waiters[0].expiresIn > 0 && state.waiters[0].expiresIn <= 3000)
  assert.deepEqual(await locks.list('inspect*'), ['inspected'], 'side keys are not listed')
  assert.equal(await locks.forceRelease('inspected'), true)
  const next = await waiter
  await sleep(400) // the old holder's next renewal (every ttl/3) finds the lock gone
  assert.equal(holder.signal.aborted, true, 'the old holder learns it lost the lock')
  await next.release()
  assert.equal(await locks.forceRelease('inspected'), false)
  const [free] = await locks.inspect('inspected')
  assert.deepEqual({ ...free, host: undefined }, { host: undefined, holder: null, ttl: null, fence: next.fence, waiters: [], foreign: false, semaphore: false, readers: 0, error: null })
  await assert.rejects(locks.list('*', { limt: 5 }), /options.limt is not an option; did you mean limit\?/)
})

test('the relock command: inspect, list, release with confirmation, exit codes', () => {
  const cli = path.join(__dirname, '..', 'bin', 'relock.js')
  const relock = (...args) => execFileSync(process.execPath, [cli, ...args, '--url', server.url], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const token = '6f1d2c3b-4a59-4e8f-8c7d-1e2f3a4b5c6d'
  server.cli('SET', 'cli:held', token, 'PX', '60000')
  server.cli('SET', 'cli:data', 'not a lock')
  assert.match(relock('inspect', 'cli:held'), new RegExp(`${token}\\s+\\d+ ms`))
  assert.match(relock('inspect', 'cli:data'), /\(not a relock lock\)/)
  assert.match(relock('list', 'cli:*'), new RegExp(`^key\\s+holder[\\s\\S]*cli:held\\s+${token}`, 'm'))
  assert.deepEqual(JSON.parse(relock('list', 'cli:*', '--json')).map((row) => row.key), ['cli:held'])
  assert.throws(() => relock('release', 'cli:held'), (error) => error.status === 2 && /--yes/.test(error.stderr))
  assert.match(relock('release', 'cli:held', '--yes'), /released 'cli:held'/)
  assert.equal(server.cli('EXISTS', 'cli:held'), '0')
  assert.throws(() => relock('release', 'cli:data', '--yes'), (error) => error.status === 1 && /not a relock lock/.test(error.stderr))
  assert.equal(server.cli('GET', 'cli:data'), 'not a lock')
  assert.throws(() => execFileSync(process.execPath, [cli, 'inspect', 'k', '--url', 'redis://127.0.0.1:1'], { stdio: 'pipe' }), (error) => error.status === 1)
  assert.throws(() => execFileSync(process.execPath, [cli, 'bogus'], { stdio: 'pipe' }), (error) => error.status === 2)
})

test('prefix: every key relock writes carries it, and no key in the API shows it', async () => {
  const prefixed = new Redlock(server.url, { prefix: 'app1:' })
  const plain = new Redlock(server.url)
  try {
    const token = await prefixed.lock('shared', 5000)
    assert.equal(server.cli('GET', 'app1:shared'), token)
    assert.equal(server.cli('EXISTS', 'shared'), '0')
    assert.ok(await plain.lock('shared', 1000), 'the unprefixed key is another lock')
    const lock = await prefixed.acquire('handled', { ttl: 2000 })
    assert.equal(lock.key, 'handled')
    assert.equal(server.cli('GET', 'app1:handled'), lock.token)
    assert.equal(server.cli('GET', '{app1:handled}:relock:fence'), String(lock.fence))
    assert.deepEqual([...await prefixed.list('*')].sort(), ['handled', 'shared'])
    const [state] = await prefixed.inspect('handled')
    assert.equal(state.holder, lock.token)
    assert.equal(await prefixed.extend('shared', token, 5000), true)
    assert.equal(await prefixed.unlock('shared', token), true)
    assert.equal(server.cli('EXISTS', 'app1:shared'), '0')
    await lock.release()
    const glob = new Redlock(server.url, { prefix: 'a*[b]:' })
    const globToken = await glob.lock('k', 1000)
    server.cli('SET', 'axx[b]:k', '6f1d2c3b-4a59-4e8f-8c7d-1e2f3a4b5c6d', 'PX', '5000')
    assert.deepEqual([...await glob.list('*')], ['k'], 'glob characters of the prefix match literally')
    await glob.unlock('k', globToken)
    await glob.close()
    assert.throws(() => new Redlock(server.url, { prefix: 7 }), /options.prefix must be a string/)
  } finally {
    await prefixed.close()
    await plain.close()
  }
})

test('logger: connections lost and regained, retries, failed renewals and losses are told', async () => {
  const host = await RedisServer.start()
  const lines = []
  const logger = { debug: (line) => lines.push(['debug', line]), warn: (line) => lines.push(['warn', line]), info: (line) => lines.push(['info', line]), error: (line) => lines.push(['error', line]) }
  const locks = new Redlock(host.url, { logger, connectTimeout: 200, commandTimeout: 200, retryCount: 1, retryDelay: 10, retryJitter: 0 })
  try {
    const lock = await locks.acquire('logged', { ttl: 600 })
    assert.equal(await locks.lock('logged', 1000), null) // busy, then one retry
    await host.kill()
    await lostWithin(lock, 3000)
    await host.restart()
    await eventually(() => locks.lock('logged-again', 1000), 'locking after the restart')
    await sleep(50)
    const text = lines.map(([level, line]) => `${level} ${line}`).join('\n')
    assert.match(text, new RegExp(`debug relock: connected to ${host.url}`))
    assert.match(text, /debug relock: lock 'logged': attempt 1 of 2: it is held; next in 10 ms/)
    assert.match(text, new RegExp(`warn relock: ${host.url} stopped answering`))
    assert.match(text, /warn relock: renewing 'logged' failed/)
    assert.match(text, /error relock: the lock on 'logged' ran out while it could not be renewed/)
    assert.match(text, new RegExp(`info relock: ${host.url} answers again`))
    assert.throws(() => new Redlock(host.url, { logger: {} }), /options.logger must have at least one of the methods/)
  } finally {
    await locks.close()
    await host.stop()
  }
})

test('DEBUG=relock logs to stderr without a logger', () => {
  const { spawnSync } = require('node:child_process')
  const script = `const { Redlock } = require(${JSON.stringify(require('node:path').join(__dirname, '..'))})
    const locks = new Redlock(${JSON.stringify(server.url)})
    locks.lock('debug-env', 1000).then(() => locks.close())`
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DEBUG: 'express,relock' } })
  assert.equal(run.status, 0, run.stderr)
  assert.match(run.stderr, new RegExp(`relock debug connected to ${server.url}`))
  const quiet = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, DEBUG: 'express' } })
  assert.equal(quiet.stderr, '')
})

test('metrics through OpenTelemetry: wait and hold histograms, held and waiting gauges, labels bounded by a key group', async () => {
  const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics')
  class Reader extends MetricReader {
    async onForceFlush() {}
    async onShutdown() {}
  }
  const reader = new Reader()
  const provider = new MeterProvider({ readers: [reader] })
  const meter = provider.getMeter('test')
  const locks = new Redlock(server.url, { metrics: { meter, keyGroup: (key) => key.split(':')[0] } })
  const points = async () => {
    const { resourceMetrics } = await reader.collect()
    const found = {}
    for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) found[metric.descriptor.name] = metric.dataPoints
    return found
  }
  try {
    const first = await locks.acquire('orders:1', { ttl: 1000 })
    const waiting = locks.acquire('orders:1', { ttl: 1000, waitTimeout: 100 }).catch((e) => e.code)
    await sleep(20)
    let found = await points()
    assert.equal(found['relock.locks.held'][0].value, 1)
    assert.equal(found['relock.locks.waiting'][0].value, 1)
    assert.equal(await waiting, 'ERR_RELOCK_WAIT_TIMEOUT')
    await first.release()
    found = await points()
    const waits = Object.fromEntries(found['relock.lock.wait.duration'].map((point) => [point.attributes['relock.outcome'], point]))
    assert.equal(waits.acquired.value.count, 1)
    assert.equal(waits.timeout.value.count, 1)
    assert.ok(waits.timeout.value.sum >= 0.09, `a 100 ms wait recorded ${waits.timeout.value.sum} s`)
    assert.deepEqual(waits.acquired.attributes, { 'relock.outcome': 'acquired', 'relock.key_group': 'orders' })
    const [held] = found['relock.lock.hold.duration']
    assert.equal(held.attributes['relock.outcome'], 'released')
    assert.equal(found['relock.locks.held'][0].value, 0)
    assert.equal(found['relock.locks.waiting'][0].value, 0)
    assert.throws(() => new Redlock(server.url, { metrics: { meter: {} } }), /options.metrics.meter must be an OpenTelemetry Meter/)
    assert.throws(() => new Redlock(server.url, { metrics: { metre: meter } }), /did you mean meter\?/)
  } finally {
    await locks.close()
    await provider.shutdown()
  }
})

test('a metrics keyGroup that throws breaks no acquire and no release: it becomes a warning', async () => {
  const { MeterProvider } = require('@opentelemetry/sdk-metrics')
  const provider = new MeterProvider()
  const locks = new Redlock(server.url, { metrics: { meter: provider.getMeter('test'), keyGroup: () => { throw new Error('no group') } } })
  const warnings = []
  const onWarning = (warning) => warnings.push(warning.message)
  process.on('warning', onWarning)
  try {
    const lock = await locks.acquire('metrics-throw', { ttl: 1000 })
    assert.equal(await lock.release(), true)
    assert.equal(server.cli('EXISTS', 'metrics-throw'), '0', 'the release was sent')
    const reader = await locks.rwlock('metrics-throw').read({ ttl: 1000 })
    assert.equal(await reader.release(), true)
    await eventually(async () => warnings.some((message) => /recording a metric failed: no group/.test(message)), 'a warning about the metric')
  } finally {
    process.off('warning', onWarning)
    await locks.close()
    await provider.shutdown()
  }
})
