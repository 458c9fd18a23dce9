'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync, spawn } = require('node:child_process')
const path = require('node:path')

const { Redlock, RelockError } = require('..')
const { RedisServer, startServers, sleep } = require('../tools/redis-server')
const { lostWithin, eventually } = require('./helpers/waiting')

const DOCUMENTED_CODES = new Set([
  'ERR_RELOCK_CONNECTION', 'ERR_RELOCK_TIMEOUT', 'ERR_RELOCK_REDIS', 'ERR_RELOCK_CLOSED', 'ERR_RELOCK_NO_QUORUM',
  'ERR_RELOCK_VALIDITY_EXPIRED', 'ERR_RELOCK_WAIT_TIMEOUT', 'ERR_RELOCK_LOCK_LOST',
])

test('a restarted Redis without persistence forgot the lock: it is reported lost, and new acquires work', async () => {
  const server = await RedisServer.start()
  const locks = new Redlock(server.url, { connectTimeout: 300, commandTimeout: 300 })
  try {
    const lock = await locks.acquire('restart', { ttl: 600 })
    await server.kill()
    await server.restart()
    const reason = await lostWithin(lock, 3000)
    assert.equal(reason.code, 'ERR_RELOCK_LOCK_LOST')
    assert.equal(lock.isValid(), false)
    const again = await eventually(() => locks.acquire('restart', { ttl: 600, waitTimeout: 200 }), 'acquiring after the restart')
    assert.ok(again.isValid())
    await again.release()
  } finally {
    await locks.close()
    await server.stop()
  }
})

test('with Redlock over 3 hosts, one host restarting does not lose the lock', async () => {
  const hosts = await startServers(3)
  const locks = new Redlock(hosts.map((h) => h.url), { connectTimeout: 300, commandTimeout: 300 })
  try {
    const lock = await locks.acquire('redlock-restart', { ttl: 600 })
    await hosts[1].kill()
    await sleep(300)
    await hosts[1].restart()
    await sleep(1500) // several renewals, some on the restarted host
    assert.equal(lock.signal.aborted, false)
    assert.equal(lock.isValid(), true)
    assert.equal(await lock.release(), true)
  } finally {
    await locks.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})

test('a host paused past commandTimeout: calls reject with ERR_RELOCK_TIMEOUT in time, and work after SIGCONT', async () => {
  const server = await RedisServer.start()
  const locks = new Redlock(server.url, { connectTimeout: 300, commandTimeout: 300 })
  try {
    const token = await locks.lock('paused', 5000)
    server.signal('SIGSTOP')
    const started = performance.now()
    // The unlock is of another key: a timed-out unlock may still run once the host wakes.
    const results = await Promise.allSettled([locks.lock('paused-2', 1000), locks.extend('paused', token, 5000), locks.unlock('paused-other', token)])
    const spent = performance.now() - started
    server.signal('SIGCONT')
    for (const result of results) {
      assert.equal(result.status, 'rejected')
      assert.equal(result.reason.code, 'ERR_RELOCK_TIMEOUT', result.reason.message)
    }
    assert.ok(spent < 300 + 300 + 200, `took ${spent.toFixed(0)} ms`)
    const ok = await eventually(() => locks.extend('paused', token, 5000), 'renewing after SIGCONT')
    assert.equal(ok, true)
    // The lock attempt that timed out ran once the host woke, and was undone.
    await eventually(async () => server.cli('EXISTS', 'paused-2') === '0', 'the timed-out attempt undone')
  } finally {
    server.signal('SIGCONT')
    await locks.close()
    await server.stop()
  }
})

test('CLIENT KILL, SCRIPT FLUSH and FLUSHALL under load: every call settles in time with a result or a documented code', async () => {
  const server = await RedisServer.start()
  const bound = 300 + 300 + 300
  const locks = new Redlock(server.url, { connectTimeout: 300, commandTimeout: 300 })
  const codes = new Map()
  let completed = 0
  let slowest = 0
  async function timed(call) {
    const started = performance.now()
    try {
      return await call()
    } catch (error) {
      assert.ok(error instanceof RelockError, String(error))
      assert.ok(DOCUMENTED_CODES.has(error.code), `${error.code}: ${error.message}`)
      codes.set(error.code, (codes.get(error.code) ?? 0) + 1)
      return null
    } finally {
      slowest = Math.max(slowest, performance.now() - started)
      completed++
    }
  }
  let running = true
  const plainLoop = async (worker) => {
    for (let i = 0; running; i++) {
      const key = `load:${worker}:${i % 50}`
      const token = await timed(() => locks.lock(key, 2000))
      if (token) await timed(() => locks.unlock(key, token))
    }
  }
  const handleLoop = async (worker) => {
    while (running) {
      const lock = await timed(() => locks.acquire(`shared:${worker % 4}`, { ttl: 1000, waitTimeout: 400 }))
      if (lock) await timed(() => lock.release())
    }
  }
  try {
    const loops = [...Array.from({ length: 16 }, (_, i) => plainLoop(i)), ...Array.from({ length: 8 }, (_, i) => handleLoop(i))]
    for (const fault of ['CLIENT KILL TYPE normal', 'SCRIPT FLUSH', 'FLUSHALL', 'CLIENT KILL TYPE pubsub', 'CLIENT KILL TYPE normal', 'SCRIPT FLUSH', 'FLUSHALL']) {
      await sleep(250)
      server.cli(...fault.split(' '))
    }
    await sleep(500)
    running = false
    await Promise.all(loops)
    assert.ok(completed > 500, `only ${completed} calls completed`)
    assert.ok(slowest < bound, `a call took ${slowest.toFixed(0)} ms`)
    // And the client is healthy afterwards, scripts and all.
    const token = await eventually(() => locks.lock('after-chaos', 1000), 'a lock after the faults')
    assert.equal(await locks.unlock('after-chaos', token), true)
  } finally {
    running = false
    await locks.close()
    await server.stop()
  }
})

test('a process that holds watched locks exits promptly when its work is done; its locks expire by ttl', async () => {
  const server = await RedisServer.start()
  try {
    const script = `
      const { Redlock } = require(${JSON.stringify(path.join(__dirname, '..'))})
      const locks = new Redlock(${JSON.stringify(server.url)})
      locks.acquire('held-at-exit', { ttl: 1000 }).then((lock) => console.log(lock.token))
    `
    const started = Date.now()
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10000 })
    assert.equal(result.status, 0, result.stderr)
    assert.ok(Date.now() - started < 3000, 'exited promptly although the watchdog was running')
    const token = result.stdout.trim()
    assert.equal(server.cli('GET', 'held-at-exit'), token, 'still held right after the exit')
    await sleep(1100)
    assert.equal(server.cli('EXISTS', 'held-at-exit'), '0', 'expired by its ttl')
  } finally {
    await server.stop()
  }
})

test('close() under heavy load settles every pending call at once and leaves nothing running', async () => {
  const server = await RedisServer.start()
  try {
    const script = `
      const { Redlock } = require(${JSON.stringify(path.join(__dirname, '..'))})
      const locks = new Redlock(${JSON.stringify(server.url)})
      ;(async () => {
        const blocker = await locks.acquire('closing:busy', { ttl: 10000 })
        const calls = []
        for (let i = 0; i < 500; i++) calls.push(locks.lock('closing:' + i, 5000))
        for (let i = 0; i < 20; i++) calls.push(locks.acquire('closing:busy', { waitTimeout: 60000 }))
        const allSettled = Promise.allSettled(calls)
        const started = Date.now()
        await locks.close()
        const settled = await allSettled
        const codes = new Set(settled.filter((s) => s.status === 'rejected').map((s) => s.reason.code))
        console.log(JSON.stringify({ ms: Date.now() - started, rejected: settled.filter((s) => s.status === 'rejected').length, codes: [...codes], blockerLost: blocker.signal.aborted }))
      })()
    `
    const result = spawnSync(process.execPath, ['--unhandled-rejections=strict', '-e', script], { encoding: 'utf8', timeout: 15000 })
    assert.equal(result.status, 0, result.stderr)
    const report = JSON.parse(result.stdout)
    assert.ok(report.ms < 1000, `close took ${report.ms} ms`)
    assert.ok(report.rejected >= 20, 'every wait was ended')
    assert.deepEqual(report.codes, ['ERR_RELOCK_CLOSED'])
    assert.equal(report.blockerLost, true)
    assert.equal(server.cli('EXISTS', 'closing:busy'), '0', 'the held lock was released by close')
  } finally {
    await server.stop()
  }
})

test('the addon works in worker_threads and in cluster workers at the same time', async () => {
  const server = await RedisServer.start()
  try {
    server.cli('SET', 'counter', '0')
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'threads-and-cluster.js'), server.url], { stdio: ['ignore', 'pipe', 'inherit'] })
    let output = ''
    child.stdout.on('data', (chunk) => { output += chunk })
    const code = await new Promise((resolve) => child.on('exit', resolve))
    assert.equal(code, 0, output)
    const report = JSON.parse(output.trim().split('\n').pop())
    assert.equal(report.contenders, 6)
    assert.equal(server.cli('GET', 'counter'), String(report.expected))
  } finally {
    await server.stop()
  }
})

test('a host still loading its data set fails calls with ERR_RELOCK_CONNECTION, as a host that is down, and serves once loaded', async () => {
  // Loading 20,000 keys 100 µs apart takes about two seconds, with the server answering LOADING.
  const server = await RedisServer.start(['--key-load-delay', '100', '--loading-process-events-interval-bytes', '1024'])
  const locks = new Redlock(server.url, { commandTimeout: 1000 })
  try {
    server.cli('EVAL', "for i = 1, 20000 do redis.call('SET', 'filler:' .. i, 'x') end", '0')
    server.cli('SAVE')
    assert.ok(await locks.lock('warm-up', 1000))
    await server.kill()
    const restarted = server.restart()
    restarted.catch(() => {}) // awaited below; a failed test stops the server first
    await eventually(async () => /LOADING/.test(server.cli('PING')), 'the server loading its data set')
    for (const [name, call] of [
      ['lock', () => locks.lock('loading', 1000)],
      ['list', () => locks.list('*')],
    ]) {
      // The first call may still meet the connection the kill cut; the next one connects anew.
      let error
      for (let attempt = 0; attempt < 20; attempt++) {
        error = await call().then(() => null, (e) => e)
        assert.equal(error?.code, 'ERR_RELOCK_CONNECTION', `${name}: ${error}`)
        if (/loading/i.test(error.message)) break
        await sleep(20)
      }
      assert.match(error.message, /loading/i)
    }
    await restarted
    assert.ok(await eventually(() => locks.lock('loading', 1000), 'a lock once the data set is loaded'))
  } finally {
    await locks.close()
    await server.stop()
  }
})
