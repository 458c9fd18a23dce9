'use strict'

// Each test here is one of the README's guarantees on a path where it once broke: unusual but
// legal use, or a fault injected with real redis-server processes and a proxy.

const { test } = require('node:test')
const assert = require('node:assert/strict')

const { Redlock } = require('..')
const { RedisServer, startServers, sleep } = require('../tools/redis-server')
const { Proxy } = require('./helpers/proxy')
const { lostWithin } = require('./helpers/waiting')

const FAST = { connectTimeout: 300, commandTimeout: 300 }

async function withServer(fn) {
  const server = await RedisServer.start()
  try {
    return await fn(server)
  } finally {
    await server.stop()
  }
}

function commandsProcessed(server) {
  return Number(/total_commands_processed:(\d+)/.exec(server.cli('INFO', 'stats'))[1])
}

// Polls `lock()` from another client until `until()` is true and returns the times at which it
// held the key.
async function contend(other, key, until) {
  const taken = []
  while (!until()) {
    const token = await other.lock(key, 100).catch(() => null)
    if (token) taken.push(performance.now())
    await sleep(5)
  }
  return taken
}

// 1. Mutual exclusion, 3. loss on time: maxHold shorter than a third of the ttl.
test('maxHold shorter than ttl/3: the lease ends with maxHold, never before isValid() turns false', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    const other = new Redlock(server.url, FAST)
    try {
      const lock = await locks.acquire('short-hold', { ttl: 3000, maxHold: 300 })
      const grantedAt = performance.now()
      const overlaps = []
      let done = false
      const watcher = contend(other, 'short-hold', () => done)
      const lost = lostWithin(lock, 4000)
      while (lock.isValid()) {
        await sleep(2)
        if (performance.now() - grantedAt > 4000) break
      }
      const invalidAt = performance.now()
      done = true
      const takenAt = await watcher
      for (const at of takenAt) if (at < invalidAt) overlaps.push(at - grantedAt)
      assert.deepEqual(overlaps, [], 'another client held the key while isValid() was still true')
      assert.ok(invalidAt - grantedAt < 300 + 100, `the lock stayed valid ${Math.round(invalidAt - grantedAt)} ms with maxHold 300`)
      const reason = await lost
      assert.equal(reason.code, 'ERR_RELOCK_LOCK_LOST')
      assert.match(reason.message, /maxHold/)
    } finally {
      await locks.close()
      await other.close()
    }
  })
})

test('maxHold counts from the grant, not from the start of the wait', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      const holder = await locks.acquire('hold-from-grant', { ttl: 2000 })
      setTimeout(() => holder.release(), 400)
      const lock = await locks.acquire('hold-from-grant', { ttl: 2000, maxHold: 600 })
      await sleep(400)
      assert.ok(lock.isValid(), 'the lock ended before maxHold had passed since its grant')
      await lock.release()
    } finally {
      await locks.close()
    }
  })
})

test('an extend to a shorter lease whose answer never came ends isValid() no later than the key', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 200, commandTimeout: 200 })
    try {
      const lock = await locks.acquire('short-extend', { ttl: 5000, watchdog: false })
      await lock.extend(5000) // the extend script is loaded
      proxy.delay(400, 'down')
      await assert.rejects(lock.extend(100), { code: 'ERR_RELOCK_TIMEOUT' })
      await sleep(150)
      assert.equal(server.cli('EXISTS', 'short-extend'), '0', 'the extend did run')
      assert.equal(lock.isValid(), false, 'isValid() is true although the key expired in Redis')
    } finally {
      proxy.heal()
      await locks.close()
      await proxy.close()
    }
  })
})

test('extend never goes past maxHold', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      const lock = await locks.acquire('extend-capped', { ttl: 1000, maxHold: 400 })
      await lock.extend(5000)
      assert.ok(lock.remainingMs() <= 400, `${lock.remainingMs()} ms left with maxHold 400`)
      assert.ok(Number(server.cli('PTTL', 'extend-capped')) <= 400)
      await sleep(450)
      assert.equal(lock.isValid(), false)
      await assert.rejects(lock.extend(1000), (error) => error.code === 'ERR_RELOCK_LOCK_LOST' && /maxHold/.test(error.message))
    } finally {
      await locks.close()
    }
  })
})

// 4. Scopes end holds.
test('an inner acquire left unreleased inside using does not outlive the using', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    const other = new Redlock(server.url, FAST)
    try {
      let inner
      await locks.using('scope-leak', { ttl: 600 }, async () => {
        inner = await locks.acquire('scope-leak')
      })
      assert.equal(inner.isValid(), false)
      assert.equal(server.cli('EXISTS', 'scope-leak'), '0', 'the key is still held after the using ended')
      const token = await other.lock('scope-leak', 1000)
      assert.ok(token, 'another client cannot take the key after the using ended')
      assert.equal(await inner.release(), false)
    } finally {
      await locks.close()
      await other.close()
    }
  })
})

test('a using started by a timer while the enclosing using is releasing is refused, not re-entered', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 1000, commandTimeout: 1000 })
    const other = new Redlock(server.url, FAST)
    try {
      await locks.lock('warm-up', 100)
      let late
      let ranInside = false
      await locks.using('scope-timer', { ttl: 2000 }, async () => {
        proxy.delay(60) // the release about to start takes about 120 ms
        setTimeout(() => {
          late = locks.using('scope-timer', async () => {
            ranInside = true
            const token = await other.lock('scope-timer', 1000)
            assert.equal(token, null, 'another client holds the key inside the nested using')
          }).then(() => 'resolved', (error) => error)
        }, 20)
      })
      proxy.heal()
      await sleep(50)
      assert.ok(late, 'the timer did not run')
      const outcome = await late
      assert.equal(outcome.code, 'ERR_RELOCK_LOCK_LOST', `the nested using ${outcome}`)
      assert.match(outcome.message, /releasing|released/)
      assert.equal(ranInside, false)
    } finally {
      await locks.close()
      await other.close()
      await proxy.close()
    }
  })
})

test('a nested using whose lock was lost rejects like the outer one', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      let innerOutcome
      const outer = locks.using('nested-lost', { ttl: 300 }, async (lock) => {
        innerOutcome = await locks
          .using('nested-lost', async () => {
            server.cli('DEL', 'nested-lost')
            await lostWithin(lock, 1000)
          })
          .then(() => 'resolved', (error) => error.code)
      })
      await assert.rejects(outer, { code: 'ERR_RELOCK_LOCK_LOST' })
      assert.equal(innerOutcome, 'ERR_RELOCK_LOCK_LOST')
      await assert.rejects(
        locks.using('nested-lost', { ttl: 300 }, async (lock) => {
          server.cli('DEL', 'nested-lost')
          await lostWithin(lock, 1000)
          await locks.using('nested-lost', async () => {})
        }),
        (error) => error.code === 'ERR_RELOCK_LOCK_LOST',
      )
    } finally {
      await locks.close()
    }
  })
})

test('a nested using still running when the outermost using ends learns it from its signal and rejects', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    const other = new Redlock(server.url, FAST)
    try {
      let nested
      let nestedSignal
      await locks.using('scope-outlived', { ttl: 2000 }, async () => {
        nested = locks.using('scope-outlived', async (inner) => {
          nestedSignal = inner.signal
          await sleep(200) // the outermost using ends meanwhile
          assert.equal(inner.isValid(), false)
        }).then(() => 'resolved', (error) => error)
        await sleep(20) // the nested using has re-entered
      })
      assert.equal(nestedSignal.aborted, true, 'the nested hold was not told')
      assert.equal(nestedSignal.reason.code, 'ERR_RELOCK_LOCK_LOST')
      assert.ok(await other.lock('scope-outlived', 1000), 'the key is still held after the outermost using ended')
      const outcome = await nested
      assert.equal(outcome.code, 'ERR_RELOCK_LOCK_LOST', `the nested using ${outcome}`)
      assert.match(outcome.message, /outermost using/)
    } finally {
      await locks.close()
      await other.close()
    }
  })
})

// 2. Fences only grow.
test('fence counters never expire, also when a lock is only renewed', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      server.cli('SET', '{fence-forever}:relock:fence', '41', 'PX', '100000')
      const lock = await locks.acquire('fence-forever', { ttl: 300 })
      assert.equal(lock.fence, 42)
      assert.equal(server.cli('PTTL', '{fence-forever}:relock:fence'), '-1')
      await lock.release()
    } finally {
      await locks.close()
    }
  })
})

test('over Redlock, a fence that could not be raised on a majority is never handed out', async () => {
  const [a, b, c] = await startServers(3)
  const proxyB = await Proxy.start(b.port)
  const urls = [a.url, proxyB.url, c.url]
  const locks = new Redlock(urls, FAST)
  try {
    await locks.using('warm-up', { ttl: 1000 }, async () => {}) // scripts loaded, connections up
    a.cli('SET', '{raised}:relock:fence', '10')
    await c.kill()
    // B answers the acquire, then stalls: raising its counter to A's fence times out.
    proxyB.stallAfter(1, 'up')
    const first = await locks.acquire('raised', { ttl: 1000, waitTimeout: 1500 }).catch((error) => error)
    proxyB.heal()
    const fences = []
    if (first.fence !== undefined) {
      fences.push(first.fence)
      await first.release().catch(() => {})
    }
    await c.restart()
    await a.kill()
    const second = await locks.acquire('raised', { ttl: 1000, waitTimeout: 3000 })
    fences.push(second.fence)
    await second.release()
    for (let i = 1; i < fences.length; i++) {
      assert.ok(fences[i] > fences[i - 1], `fence ${fences[i]} was handed out after fence ${fences[i - 1]}`)
    }
  } finally {
    await locks.close()
    await proxyB.close()
    await Promise.all([a, b, c].map((s) => s.stop()))
  }
})

// 3. Loss is reported on time, also with the connection frozen.
test('with the connection frozen, the signal aborts when isValid() turns false, not when the renewal times out', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 3000, commandTimeout: 3000 })
    try {
      const lock = await locks.acquire('frozen', { ttl: 600 })
      proxy.stall()
      let invalidAt = null
      const abortedAt = new Promise((resolve) => lock.signal.addEventListener('abort', () => resolve(performance.now())))
      while (invalidAt === null) {
        if (!lock.isValid()) invalidAt = performance.now()
        else await new Promise((resolve) => setImmediate(resolve))
      }
      const lag = (await abortedAt) - invalidAt
      assert.ok(lag < 50, `the signal aborted ${Math.round(lag)} ms after isValid() turned false`)
    } finally {
      proxy.heal()
      await locks.close()
      await proxy.close()
    }
  })
})

// 5. Waiting costs little.
test('over 3 hosts, waiters of a lock held on a majority do not spin on the free host', async () => {
  const hosts = await startServers(3)
  const locks = new Redlock(hosts.map((h) => h.url), FAST)
  try {
    hosts[0].cli('SET', 'majority-held', 'someone', 'PX', '3000')
    hosts[1].cli('SET', 'majority-held', 'someone', 'PX', '3000')
    const waits = [0, 1].map(() => locks.acquire('majority-held', { ttl: 1000, waitTimeout: 1500 }).catch((e) => e.code))
    const second = new Redlock(hosts.map((h) => h.url), FAST)
    const third = second.acquire('majority-held', { ttl: 1000, waitTimeout: 1500 }).catch((e) => e.code)
    await sleep(300)
    const before = commandsProcessed(hosts[2])
    await sleep(1000)
    const perSecond = commandsProcessed(hosts[2]) - before
    assert.ok(perSecond < 100, `the free host processed ${perSecond} commands in a second for 3 waiters`)
    assert.deepEqual(await Promise.all([...waits, third]), Array(3).fill('ERR_RELOCK_WAIT_TIMEOUT'))
    await second.close()
  } finally {
    await locks.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})

// 6. No ghost locks.
test('an acquire whose reply came too late recognises its own lock on the retry', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 200, commandTimeout: 200 })
    try {
      await locks.lock('warm-up', 100)
      // The first attempt runs in Redis, but its answer comes after commandTimeout; so does the
      // second's. The third, after the heal, finds the key held by its own token.
      proxy.delay(500, 'down')
      setTimeout(() => proxy.heal(), 600)
      const started = performance.now()
      const lock = await locks.acquire('late-reply', { ttl: 5000, waitTimeout: 3000 })
      const waited = performance.now() - started
      assert.ok(waited < 2000, `the acquire waited ${Math.round(waited)} ms on its own lock`)
      assert.equal(server.cli('GET', 'late-reply'), lock.token)
      await lock.release()
    } finally {
      await locks.close()
      await proxy.close()
    }
  })
})

test('a lock call that timed out leaves no lock behind', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 200, commandTimeout: 200 })
    try {
      await locks.lock('warm-up', 100)
      proxy.delay(300, 'down')
      await assert.rejects(locks.lock('ghost', 10_000), { code: 'ERR_RELOCK_TIMEOUT' })
      assert.equal(server.cli('EXISTS', 'ghost'), '1', 'the script did run')
      proxy.heal()
      let free = false
      for (let i = 0; i < 100 && !free; i++) {
        free = server.cli('EXISTS', 'ghost') === '0'
        if (!free) await sleep(10)
      }
      assert.ok(free, 'the lock whose reply came too late is still held')
    } finally {
      await locks.close()
      await proxy.close()
    }
  })
})

// 7. A stalled host delays nothing past commandTimeout.
test('a busy answer does not wait for a stalled host', async () => {
  const hosts = await startServers(3)
  const locks = new Redlock(hosts.map((h) => h.url), { connectTimeout: 2000, commandTimeout: 300 })
  try {
    assert.ok(await locks.lock('stalled-busy', 100))
    for (const host of hosts.slice(0, 2)) host.cli('SET', 'stalled-busy-2', 'someone', 'PX', '5000')
    hosts[2].signal('SIGSTOP')
    const started = performance.now()
    assert.equal(await locks.lock('stalled-busy-2', 1000), null)
    const took = performance.now() - started
    assert.ok(took < 150, `a busy answer took ${Math.round(took)} ms`)
    const waitStarted = performance.now()
    await assert.rejects(locks.acquire('stalled-busy-2', { ttl: 1000, waitTimeout: 100 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
    const waited = performance.now() - waitStarted
    assert.ok(waited < 300, `a 100 ms wait took ${Math.round(waited)} ms`)
  } finally {
    hosts[2].signal('SIGCONT')
    await locks.close()
    await Promise.all(hosts.map((h) => h.stop()))
  }
})

test('an abort settles at once, also with an attempt in flight to a stalled host', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, { connectTimeout: 2000, commandTimeout: 1000 })
    try {
      await locks.lock('warm-up', 100)
      server.signal('SIGSTOP')
      const controller = new AbortController()
      const waiting = locks.acquire('abort-stalled', { signal: controller.signal })
      await sleep(50)
      const abortedAt = performance.now()
      controller.abort()
      await assert.rejects(waiting, { code: 'ABORT_ERR' })
      const took = performance.now() - abortedAt
      assert.ok(took < 50, `the abort took ${Math.round(took)} ms to settle`)
    } finally {
      server.signal('SIGCONT')
      await locks.close()
    }
  })
})

// 8. Operator calls touch only locks.
test('forceRelease refuses a key that is not a relock lock, and list returns lock keys only', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      server.cli('SET', 'user:1', 'alice')
      server.cli('SET', 'user:2', 'bob', 'PX', '100000')
      server.cli('HSET', 'user:3', 'name', 'carol')
      const token = await locks.lock('user:lock', 10_000)
      for (const key of ['user:1', 'user:2', 'user:3']) {
        await assert.rejects(locks.forceRelease(key), (error) => error.code === 'ERR_RELOCK_INVALID_ARGUMENT' && /not a relock lock/.test(error.message))
      }
      assert.equal(server.cli('GET', 'user:1'), 'alice')
      assert.equal(server.cli('GET', 'user:2'), 'bob')
      assert.equal(server.cli('HGET', 'user:3', 'name'), 'carol')
      assert.deepEqual(await locks.list('user:*'), ['user:lock'])
      assert.equal(await locks.forceRelease('user:lock'), true)
      assert.equal(await locks.forceRelease('user:lock'), false, 'a free key is no lock to release')
      assert.equal(await locks.unlock('user:lock', token), false)
    } finally {
      await locks.close()
    }
  })
})

// 9. A dead fair waiter blocks the queue for at most its liveness window.
test('a fair waiter that died just before a release blocks the next waiter for its liveness window, not its ttl', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const dying = new Redlock(proxy.url, { connectTimeout: 5000, commandTimeout: 5000 })
    const locks = new Redlock(server.url, FAST)
    try {
      const holder = await locks.acquire('dead-waiter', { ttl: 20_000, fair: true })
      const dead = dying.acquire('dead-waiter', { ttl: 20_000, fair: true, waitTimeout: 15_000 }).catch((e) => e)
      await sleep(200) // queued first
      const live = locks.acquire('dead-waiter', { ttl: 20_000, fair: true, waitTimeout: 15_000 })
      await sleep(200) // queued second
      proxy.stall() // the first waiter goes silent, as if its process had died
      const releasedAt = performance.now()
      await holder.release()
      const next = await live
      const waited = performance.now() - releasedAt
      assert.ok(waited < 3000 + 1500, `the live waiter got the lock ${Math.round(waited)} ms after the release`)
      await next.release()
      proxy.heal()
      const late = await dead
      if (late && typeof late.release === 'function') await late.release().catch(() => {})
    } finally {
      proxy.heal()
      await dying.close()
      await locks.close()
      await proxy.close()
    }
  })
})

// 10. `{x}` (x without a tag of its own) hashes to the same slot as `x`, and relock keeps the
// side keys of both under `{x}`. A release of `x` hands the lock to the head of x's fair queue:
// a waiter for `{x}` must never be that head.
test('a fair waiter for {k} is never handed k, whose side keys share its hash tag', async () => {
  await withServer(async (server) => {
    const locks = new Redlock(server.url, FAST)
    try {
      const braced = await locks.acquire('{edge}', { ttl: 10_000 })
      const plain = await locks.acquire('edge', { ttl: 10_000 })
      const waiter = locks.acquire('{edge}', { ttl: 10_000, fair: true, waitTimeout: 1500 }).catch((error) => error)
      await sleep(200) // queued
      await plain.release()
      const outcome = await waiter
      assert.equal(outcome.code, 'ERR_RELOCK_WAIT_TIMEOUT', `a second holder of '{edge}' while the first still held it: ${outcome}`)
      assert.equal(braced.isValid(), true)
      assert.equal(server.cli('EXISTS', 'edge'), '0', "'edge' was left held for a waiter that never asked for it")
      await braced.release()
    } finally {
      await locks.close()
    }
  })
})

// 11. A hold this client counts as lost when its renewals go unanswered may still be renewed on
// Redis (the requests arrived, the replies did not). Its release still deletes the key where it
// holds the token, so the scope that ends it leaves nothing behind.
test('releasing a hold lost to unanswered renewals still deletes the key where it is ours', async () => {
  await withServer(async (server) => {
    const proxy = await Proxy.start(server.port)
    const locks = new Redlock(proxy.url, { connectTimeout: 1000, commandTimeout: 1000 })
    try {
      const lock = await locks.acquire('unanswered', { ttl: 600 })
      await sleep(300) // renewed once: the watchdog's connection is open
      proxy.stall('down') // requests still arrive; no reply comes back
      await new Promise((resolve) => lock.signal.addEventListener('abort', resolve, { once: true }))
      assert.equal(lock.signal.reason.code, 'ERR_RELOCK_LOCK_LOST')
      proxy.heal()
      const left = Number(server.cli('PTTL', 'unanswered'))
      assert.ok(left > 50, `a renewal that went unanswered reached Redis (${left} ms left)`)
      const started = performance.now()
      await assert.rejects(lock.release(), { code: 'ERR_RELOCK_LOCK_LOST' })
      const after = Number(server.cli('PTTL', 'unanswered'))
      assert.ok(performance.now() - started < left - 20, 'the release took longer than the key had left')
      assert.equal(after, -2, `the key outlives the released hold by ${after} ms`)
    } finally {
      proxy.heal()
      await locks.close()
      await proxy.close()
    }
  })
})
