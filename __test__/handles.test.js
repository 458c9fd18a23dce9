'use strict'

const { test, before, after, beforeEach } = require('node:test')
const assert = require('node:assert/strict')
const { fork } = require('node:child_process')
const path = require('node:path')

const { Redlock, RelockError, Lock } = require('..')
const { RedisServer, startServers, sleep } = require('../tools/redis-server')
const { runWorkers } = require('./helpers/workers')
const { lostWithin } = require('./helpers/waiting')

let server
let locks

before(async () => {
  server = await RedisServer.start()
  locks = new Redlock(server.url, { commandTimeout: 500 })
})

after(async () => {
  await locks.close()
  await server.stop()
})

beforeEach(() => server.cli('FLUSHALL'))

const worker = (options) => [JSON.stringify([server.url]), server.url, String(options.rounds ?? 1), JSON.stringify(options)]

function sortedByAcquisition(results) {
  return results.flatMap((result) => result.records).sort((a, b) => a.acquired - b.acquired)
}

test('a Lock handle: key, token, fence, validity, release', async () => {
  const lock = await locks.acquire('handle', { ttl: 2000 })
  assert.ok(lock instanceof Lock)
  assert.equal(lock.key, 'handle')
  assert.equal(server.cli('GET', 'handle'), lock.token, 'the lock key holds just the token')
  assert.equal(lock.fence, 1)
  assert.equal(lock.isValid(), true)
  assert.ok(lock.remainingMs() > 1900 && lock.remainingMs() <= 2000)
  assert.equal(lock.signal.aborted, false)
  assert.equal(await lock.release(), true)
  assert.equal(await lock.release(), false, 'a second release is harmless')
  assert.equal(lock.isValid(), false)
  assert.equal(lock.remainingMs(), 0)
  assert.equal(server.cli('EXISTS', 'handle'), '0')
  const next = await locks.acquire('handle')
  assert.equal(next.fence, 2, 'fences grow with every acquisition')
  await next.release()
})

test('a waiter is woken by the release, not by polling', async () => {
  const holder = await locks.acquire('wake', { ttl: 30000 })
  const waiting = locks.acquire('wake', { waitTimeout: 5000 })
  await sleep(100)
  const released = performance.now()
  await holder.release()
  const next = await waiting
  const handoff = performance.now() - released
  assert.ok(handoff < 50, `handoff took ${handoff.toFixed(1)} ms although the holder's ttl had 30 s left`)
  await next.release()
})

test('a lock that expires without a release still reaches the waiter', async () => {
  const plain = await locks.lock('expiring', 300)
  const started = performance.now()
  const lock = await locks.acquire('expiring', { waitTimeout: 3000 })
  const waited = performance.now() - started
  assert.ok(waited >= 250 && waited < 600, `waited ${waited.toFixed(0)} ms for a 300 ms ttl`)
  assert.notEqual(lock.token, plain)
  await lock.release()
})

test('waitTimeout and abort reject with their codes and leave nothing behind', async () => {
  const holder = await locks.lock('busy', 10000)
  const started = performance.now()
  await assert.rejects(locks.acquire('busy', { waitTimeout: 200 }), (error) => {
    assert.ok(error instanceof RelockError)
    assert.equal(error.code, 'ERR_RELOCK_WAIT_TIMEOUT')
    assert.match(error.message, /'busy' was not acquired within the wait timeout/)
    return true
  })
  assert.ok(performance.now() - started < 400)
  await assert.rejects(locks.acquire('busy', { waitTimeout: 200, fair: true }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })

  const controller = new AbortController()
  setTimeout(() => controller.abort(new Error('user went away')), 100)
  await assert.rejects(locks.acquire('busy', { signal: controller.signal, fair: true }), (error) => {
    assert.equal(error.name, 'AbortError')
    assert.equal(error.code, 'ABORT_ERR')
    assert.equal(error.cause.message, 'user went away')
    return true
  })
  await assert.rejects(locks.acquire('busy', { signal: AbortSignal.abort() }), { name: 'AbortError' })
  await assert.rejects(locks.acquire('busy', { signal: AbortSignal.timeout(100) }), { code: 'ABORT_ERR' })

  assert.deepEqual(server.cli('KEYS', '*busy*').split('\n').filter(Boolean), ['busy'], 'no queue, waiter or fence key was left')
  assert.equal(server.cli('GET', 'busy'), holder)
  await sleep(1300) // subscriptions linger for a second after the last waiter leaves
  assert.equal(server.cli('PUBSUB', 'NUMSUB', '{busy}:relock:released').split('\n')[1], '0', 'the subscription was dropped')
  assert.equal(server.cli('PUBSUB', 'CHANNELS'), '', 'no channel is left subscribed')
})

test('bad acquire options are refused with typed errors', async () => {
  for (const [options, pattern] of [
    [{ ttl: 0 }, /ttl must be a positive integer/],
    [{ ttl: '5s' }, /options.ttl must be a number/],
    [{ waitTimeout: -1 }, /waitTimeout must be a non-negative integer/],
    [{ maxHold: 1.5 }, /maxHold must be a positive integer/],
    [{ ttl: 10 }, /ttl must be at least 100 ms/],
    [{ maxHold: 50 }, /maxHold must be at least 100 ms/],
    [{ waittimeout: 100 }, /options.waittimeout is not an option; did you mean waitTimeout\?/],
    [{ ttl: 1000, fiar: true }, /options.fiar is not an option; did you mean fair\?/],
    [{ fair: 'yes' }, /options.fair must be a boolean/],
    [{ signal: {} }, /options.signal must be an AbortSignal/],
    [{ onLost: 'log' }, /options.onLost must be a function/],
  ]) {
    await assert.rejects(locks.acquire('k', options), (error) => error.code === 'ERR_RELOCK_INVALID_ARGUMENT' && pattern.test(error.message))
  }
  await assert.rejects(locks.acquire(7), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.using('k', {}, 'not a function'), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  assert.equal(server.cli('DBSIZE'), '0')
})

test('the watchdog keeps a short lease alive while the event loop is blocked', async () => {
  const lock = await locks.acquire('blocked', { ttl: 300 })
  const until = Date.now() + 1000
  while (Date.now() < until) {} // synchronous work, 3 × the ttl
  assert.equal(lock.isValid(), true)
  assert.equal(server.cli('GET', 'blocked'), lock.token)
  assert.equal(await lock.release(), true)
})

test('without the watchdog the lease runs out, and that is reported', async () => {
  let reported = null
  const lock = await locks.acquire('no-watchdog', { ttl: 200, watchdog: false, onLost: (error) => { reported = error } })
  await sleep(350)
  assert.equal(lock.isValid(), false)
  assert.equal(lock.signal.aborted, true)
  assert.equal(lock.signal.reason.code, 'ERR_RELOCK_LOCK_LOST')
  assert.equal(reported.code, 'ERR_RELOCK_LOCK_LOST')
  await assert.rejects(lock.release(), { code: 'ERR_RELOCK_LOCK_LOST' })
  assert.equal(await lock.release(), false)
})

test('a lease that ran out while the event loop was blocked is reported even when release comes first', async () => {
  // The loss is queued for JavaScript while the loop is blocked; the release, called before the
  // loop turns, must not swallow it.
  const events = []
  locks.once('lost', () => events.push('event'))
  const lock = await locks.acquire('blocked-then-released', { ttl: 100, watchdog: false, onLost: (error) => events.push(error.code) })
  const signal = lock.signal
  const until = Date.now() + 250
  while (Date.now() < until) {
    // a synchronous section longer than the lease
  }
  await assert.rejects(lock.release(), { code: 'ERR_RELOCK_LOCK_LOST' })
  await sleep(100)
  assert.equal(signal.aborted, true, 'the signal aborted')
  assert.deepEqual(events.sort(), ['ERR_RELOCK_LOCK_LOST', 'event'], 'onLost and the lost event, once each')
})

test('a release that is the first to find the key taken over reports the loss too', async () => {
  const events = []
  const lock = await locks.acquire('taken-before-release', { ttl: 5000, onLost: (error) => events.push(error.code) })
  lock.signal.addEventListener('abort', () => events.push('abort'))
  server.cli('SET', 'taken-before-release', 'someone-else')
  await assert.rejects(lock.release(), { code: 'ERR_RELOCK_LOCK_LOST' })
  assert.deepEqual(events.sort(), ['ERR_RELOCK_LOCK_LOST', 'abort'])
  assert.equal(server.cli('GET', 'taken-before-release'), 'someone-else')
})

test('a client and handle nobody refers to any more still report the loss of the lock', () => {
  const { spawnSync } = require('node:child_process')
  const script = `
    const { Redlock } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const { execFileSync } = require('node:child_process')
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
    let stepDowns = 0
    ;(async () => {
      // Leader election as some write it: only onLost matters, client and handle are dropped.
      await (async () => { await new Redlock(${JSON.stringify(server.url)}).acquire('dropped-leader', { ttl: 300, onLost: () => stepDowns++ }) })()
      for (let i = 0; i < 3; i++) { await sleep(20); global.gc() }
      execFileSync('redis-cli', ['-p', '${server.port}', 'SET', 'dropped-leader', 'someone-else'])
      await sleep(600)
      console.log(JSON.stringify({ stepDowns }))
    })()
  `
  const result = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 20000 })
  assert.equal(result.status, 0, result.stderr)
  assert.deepEqual(JSON.parse(result.stdout), { stepDowns: 1 })
})

test('maxHold caps how long the watchdog keeps renewing', async () => {
  const lock = await locks.acquire('capped', { ttl: 200, maxHold: 500 })
  await sleep(300)
  assert.equal(lock.isValid(), true, 'renewed past its first ttl')
  const reason = await lostWithin(lock, 2000)
  assert.match(reason.message, /maxHold/)
  assert.equal(server.cli('EXISTS', 'capped'), '0', 'expired in Redis')
})

test('a lock taken over is reported lost through signal and onLost', async () => {
  const events = []
  const lock = await locks.acquire('stolen', { ttl: 300, onLost: (error) => events.push(error.code) })
  lock.signal.addEventListener('abort', () => events.push('abort'))
  server.cli('SET', 'stolen', 'someone-else')
  await sleep(400)
  assert.deepEqual(events.sort(), ['ERR_RELOCK_LOCK_LOST', 'abort'])
  await assert.rejects(lock.extend(1000), { code: 'ERR_RELOCK_LOCK_LOST' })
  await assert.rejects(lock.release(), { code: 'ERR_RELOCK_LOCK_LOST' })
  assert.equal(server.cli('GET', 'stolen'), 'someone-else', 'the new holder was not touched')
})

test('extend renews the lease and the watchdog keeps the new ttl', async () => {
  const lock = await locks.acquire('extending', { ttl: 1000 })
  await lock.extend(60000)
  assert.ok(Number(server.cli('PTTL', 'extending')) > 50000)
  assert.ok(lock.remainingMs() > 50000)
  await lock.release()
  await assert.rejects(lock.extend(1000), { code: 'ERR_RELOCK_LOCK_LOST' })
})

test('Symbol.asyncDispose releases the lock', async () => {
  const lock = await locks.acquire('disposable')
  assert.equal(typeof lock[Symbol.asyncDispose], 'function')
  await lock[Symbol.asyncDispose]()
  assert.equal(server.cli('EXISTS', 'disposable'), '0')
})

test('using re-enters in the same async chain and excludes other chains', async () => {
  const order = []
  let letOtherFlowTry
  const otherFlowMayTry = new Promise((resolve) => { letOtherFlowTry = resolve })
  // Started outside the `using` below: an unrelated flow of the same process.
  const otherFlow = (async () => {
    await otherFlowMayTry
    return locks.acquire('reentrant', { waitTimeout: 100 })
  })()
  await locks.using('reentrant', { ttl: 5000 }, async (outer) => {
    order.push('outer')
    await locks.using('reentrant', async (inner) => {
      assert.equal(inner.token, outer.token)
      order.push('nested using')
    })
    const again = await locks.acquire('reentrant', { waitTimeout: 100 })
    assert.equal(again.fence, outer.fence)
    await again.release()
    assert.equal(outer.isValid(), true, 'inner releases do not release the outer hold')
    assert.equal(server.cli('GET', 'reentrant'), outer.token)
    letOtherFlowTry()
    await assert.rejects(otherFlow, { code: 'ERR_RELOCK_WAIT_TIMEOUT' }, 'the other flow does not share the hold')
  })
  assert.deepEqual(order, ['outer', 'nested using'])
  assert.equal(server.cli('EXISTS', 'reentrant'), '0', 'released when the outermost exits')

  let inside = 0
  let maxInside = 0
  await Promise.all(Array.from({ length: 8 }, () => locks.using('serial', async () => {
    maxInside = Math.max(maxInside, ++inside)
    await sleep(5)
    inside--
  })))
  assert.equal(maxInside, 1, 'concurrent flows of one process exclude each other')
})

test('using releases on a throw and reports a lock lost during the section', async () => {
  await assert.rejects(locks.using('throws', async () => { throw new Error('boom') }), /boom/)
  assert.equal(server.cli('EXISTS', 'throws'), '0')
  await assert.rejects(
    locks.using('lost-inside', { ttl: 200, watchdog: false }, async () => { await sleep(300) }),
    { code: 'ERR_RELOCK_LOCK_LOST' },
  )
})

test('4 processes × 100 acquire increments lose nothing, plain and fair; fences grow in acquisition order', async () => {
  for (const fair of [false, true]) {
    server.cli('SET', 'counter', '0')
    const results = await runWorkers('acquire-worker.js', 4, worker({ rounds: 100, fair }))
    assert.equal(server.cli('GET', 'counter'), '400', `fair: ${fair}`)
    assert.ok(results.every((result) => result.maxInside === 1), 'never two holders inside')
    const fences = sortedByAcquisition(results).map((record) => record.fence)
    for (let i = 1; i < fences.length; i++) assert.ok(fences[i] > fences[i - 1], `fence ${fences[i]} after ${fences[i - 1]}`)
  }
})

test('a 1500 ms synchronous section with a 500 ms ttl, 2 processes × 5: never two inside', async () => {
  server.cli('SET', 'counter', '0')
  const results = await runWorkers('acquire-worker.js', 2, worker({ rounds: 5, ttl: 500, busyMs: 1500 }))
  assert.equal(server.cli('GET', 'counter'), '10')
  assert.deepEqual(results.map((result) => result.maxInside), [1, 1])
})

test('a SIGKILLed holder frees the lock within its ttl', async () => {
  const holder = fork(path.join(__dirname, 'fixtures', 'acquire-worker.js'), worker({ ttl: 1000, holdForever: true, announce: true }), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await new Promise((resolve) => holder.once('message', resolve))
  const waiting = locks.acquire('contended', { waitTimeout: 5000 })
  await sleep(100)
  const killed = performance.now()
  holder.kill('SIGKILL')
  const lock = await waiting
  const waited = performance.now() - killed
  assert.ok(waited < 1000 + 300, `took ${waited.toFixed(0)} ms after the kill`)
  await lock.release()
})

test('fair waiters of several processes get the lock in the order they began waiting', async () => {
  const holder = await locks.acquire('contended', { ttl: 10000 })
  const workers = [0, 1, 2, 3].map((index) => fork(path.join(__dirname, 'fixtures', 'acquire-worker.js'),
    [...worker({ fair: true, startDelayMs: 150 * index }), String(index)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const results = workers.map((child) => new Promise((resolve) => child.on('message', (m) => m.records && resolve(m))))
  await sleep(800)
  await holder.release()
  const records = sortedByAcquisition(await Promise.all(results))
  const byBegin = [...records].sort((a, b) => a.begin - b.begin).map((record) => record.worker)
  assert.deepEqual(records.map((record) => record.worker), byBegin, 'acquired in the order the waits began')
  assert.deepEqual(byBegin, [0, 1, 2, 3])
})

test('a killed fair waiter does not stall the queue', async () => {
  const holder = await locks.acquire('contended', { ttl: 10000 })
  const doomed = fork(path.join(__dirname, 'fixtures', 'acquire-worker.js'), [...worker({ fair: true, ttl: 1000 }), '9'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await sleep(300)
  const behind = locks.acquire('contended', { fair: true, waitTimeout: 8000 })
  await sleep(100)
  doomed.kill('SIGKILL')
  const released = performance.now()
  await holder.release()
  const lock = await behind
  const waited = performance.now() - released
  // At worst the dead waiter was handed the lock (its place was still live) and its 1 s ttl
  // must run out; its place in the queue itself expires after 3 s of silence.
  assert.ok(waited < 1000 + 3000 + 500, `the next waiter waited ${waited.toFixed(0)} ms`)
  await lock.release()
  await sleep(3200)
  assert.deepEqual(server.cli('KEYS', '{contended}:relock:q*').split('\n').filter(Boolean), [], 'the queue is empty and gone')
})

test('fair: true over several hosts is refused rather than pretended', async () => {
  const hosts = await startServers(3)
  const redlock = new Redlock(hosts.map((h) => h.url))
  await assert.rejects(redlock.acquire('k', { fair: true }), { code: 'ERR_RELOCK_UNSUPPORTED' })
  await redlock.close()
  await Promise.all(hosts.map((h) => h.stop()))
})

test('the watchdog over Redlock survives a minority of hosts and reports losing the majority', async () => {
  const hosts = await startServers(3)
  const redlock = new Redlock(hosts.map((h) => h.url), { connectTimeout: 200, commandTimeout: 200 })
  try {
    const lock = await redlock.acquire('redlocked', { ttl: 600 })
    await hosts[0].kill()
    await sleep(1500)
    assert.equal(lock.isValid(), true, 'renewed on the remaining majority')
    assert.equal(lock.signal.aborted, false)
    await hosts[1].kill()
    await lostWithin(lock, 3000)
    assert.equal(lock.signal.reason.code, 'ERR_RELOCK_LOCK_LOST')
    assert.match(lock.signal.reason.message, /could not be renewed/)
    assert.equal(lock.isValid(), false)
  } finally {
    await redlock.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})

test('fences over Redlock grow with every holder, whichever majority answers', async () => {
  const hosts = await startServers(3)
  const redlock = new Redlock(hosts.map((h) => h.url), { commandTimeout: 200 })
  try {
    hosts[0].cli('SET', '{fenced}:relock:fence', '41') // one host ahead of the others
    const fences = []
    for (let round = 0; round < 6; round++) {
      const paused = hosts[(round + 2) % 3] // each round a different majority answers
      paused.signal('SIGSTOP')
      try {
        const lock = await redlock.acquire('fenced', { ttl: 2000 })
        fences.push(lock.fence)
        await lock.release()
      } finally {
        paused.signal('SIGCONT')
      }
      await sleep(50)
    }
    assert.equal(fences[0], 42, 'the first majority includes the host that was ahead')
    for (let i = 1; i < fences.length; i++) assert.ok(fences[i] > fences[i - 1], `fences ${fences}`)
  } finally {
    await redlock.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})

test('close ends waits, stops the watchdogs and releases held locks; closing is not losing', async () => {
  const client = new Redlock(server.url)
  const lostReports = []
  const released = []
  client.on('lost', (event) => lostReports.push(event))
  client.on('released', (event) => released.push(event))
  const held = await client.acquire('held-at-close', { ttl: 5000, onLost: (reason) => lostReports.push(reason) })
  const plain = await locks.lock('blocked-at-close', 5000)
  const waiting = assert.rejects(client.acquire('blocked-at-close', { waitTimeout: 10000 }), { code: 'ERR_RELOCK_CLOSED' })
  await sleep(50)
  await client.close()
  await waiting
  assert.equal(held.signal.aborted, true)
  assert.equal(held.signal.reason.code, 'ERR_RELOCK_CLOSED')
  assert.equal(held.isValid(), false)
  assert.equal(server.cli('EXISTS', 'held-at-close'), '0', 'released by close')
  assert.deepEqual(lostReports, [], 'close() reported a lock as lost')
  assert.deepEqual(released.map(({ key, closed }) => ({ key, closed })), [{ key: 'held-at-close', closed: true }])
  const stats = client.stats()
  assert.equal(stats.lost, 0)
  assert.equal(stats.failed, 0)
  assert.equal(stats.closed, 2, 'the held lock and the wait')
  assert.equal(await held.release(), false, 'close() released it before')
  await assert.rejects(client.acquire('x'), { code: 'ERR_RELOCK_CLOSED' })
  await locks.unlock('blocked-at-close', plain)
})

test('handles are freed after release: the heap stays flat over many acquire/release cycles', () => {
  const { spawnSync } = require('node:child_process')
  const script = `
    const { Redlock } = require(${JSON.stringify(path.join(__dirname, '..'))})
    const locks = new Redlock(${JSON.stringify(server.url)})
    const cycle = (n) => Promise.all(Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; i < n / 16; i++) { const lock = await locks.acquire('leak:' + w, { ttl: 5000 }); await lock.release() }
    }))
    ;(async () => {
      await cycle(2000)
      global.gc(); const before = process.memoryUsage().heapUsed
      await cycle(10000)
      global.gc(); const after = process.memoryUsage().heapUsed
      console.log(JSON.stringify({ growthKb: (after - before) / 1024 }))
      await locks.close()
    })()
  `
  const result = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60000 })
  assert.equal(result.status, 0, result.stderr)
  const { growthKb } = JSON.parse(result.stdout)
  assert.ok(growthKb < 512, `the heap grew by ${growthKb.toFixed(0)} KB over 10000 acquisitions`)
})

test('tryAcquire makes exactly one attempt: a handle when free, null when held, the error when the host fails', async () => {
  const other = new Redlock(server.url)
  try {
    const lock = await locks.tryAcquire('try-once', { ttl: 2000 })
    assert.ok(lock && lock.isValid())
    await other.unlock('try-once:warm-up', 'none') // connected, scripts loaded
    await other.tryAcquire('try-once:warm-up').then((held) => held.release())
    const scripts = () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(server.cli('INFO', 'commandstats'))?.[1] ?? 0)
    const before = scripts()
    const started = performance.now()
    assert.equal(await other.tryAcquire('try-once', { ttl: 2000 }), null)
    assert.ok(performance.now() - started < 100)
    assert.equal(scripts() - before, 1, 'a busy try runs one script')
    assert.equal(other.stats().busy, 1)
    assert.equal(other.stats().acquired, 1)
    assert.equal(other.stats().waitTimedOut, 0)
    await assert.rejects(other.acquire('try-once', { waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
    await lock.release()
    const second = await other.acquire('try-once', { waitTimeout: 0 })
    assert.ok(second.isValid(), 'waitTimeout: 0 takes a free lock')
    await second.release()
    await assert.rejects(other.tryAcquire('try-once', { waitTimeout: 10 }), /options.waitTimeout is not an option/)
    const nobody = new Redlock('redis://127.0.0.1:1', { connectTimeout: 200, commandTimeout: 200 })
    await assert.rejects(nobody.tryAcquire('try-once'), { code: 'ERR_RELOCK_CONNECTION' })
    await nobody.close()
  } finally {
    await other.close()
  }
})

test('an acquire reads its options once: changing the object afterwards changes nothing', async () => {
  const holder = await locks.acquire('read-once', { ttl: 5000 })
  try {
    // The first attempt finds the key held; the wait that follows must still be the 300 ms asked.
    for (const [name, wait] of [
      ['mutex', (options) => locks.acquire('read-once', options)],
      ['semaphore', (options) => locks.semaphore('read-once-pool', { permits: 1 }).acquire(options)],
      ['read lock', (options) => locks.rwlock('read-once').read(options)],
    ]) {
      const blocker = name === 'semaphore' ? await locks.semaphore('read-once-pool', { permits: 1 }).acquire({ ttl: 5000 }) : null
      const options = { ttl: 1000, waitTimeout: 300 }
      const started = performance.now()
      const waiting = wait(options)
      options.waitTimeout = 60_000
      const error = await Promise.race([waiting.catch((e) => e), sleep(3000).then(() => 'still waiting')])
      assert.equal(error.code, 'ERR_RELOCK_WAIT_TIMEOUT', `${name}: ${error}`)
      assert.ok(performance.now() - started < 2000, `${name} waited ${performance.now() - started} ms`)
      await blocker?.release()
    }
  } finally {
    await holder.release()
  }
})

test('a handle method called on something else rejects with a RelockError, never throws', async () => {
  const lock = await locks.acquire('detached', { ttl: 1000 })
  const detached = lock.release
  let returned
  assert.doesNotThrow(() => {
    returned = detached.call({})
  })
  await assert.rejects(returned, (error) => error instanceof RelockError && error.code === 'ERR_RELOCK_INTERNAL')
  assert.equal(await lock.release(), true)
})
