'use strict'

// Read-write locks, semaphores and multi-key locks against a real redis-server: their rules
// one by one, their errors, a crashed (SIGKILLed) holder, and 4 processes contending on all
// three at once, checked over the recorded history of every hold.

const { test, before, after, beforeEach } = require('node:test')
const assert = require('node:assert/strict')
const { fork } = require('node:child_process')
const path = require('node:path')

const { Redlock, ReadWriteHandle, PermitHandle } = require('..')
const { RedisServer, startServers, sleep } = require('../tools/redis-server')
const { runWorkers } = require('./helpers/workers')

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

test('read-write lock: readers share, a writer is alone, a waiting writer turns new readers away', async () => {
  const document = locks.rwlock('doc')
  const first = await document.read()
  const second = await document.read()
  assert.ok(first instanceof ReadWriteHandle)
  assert.equal(first.mode, 'read')
  await assert.rejects(document.write({ waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
  const writer = document.write({ waitTimeout: 5000 })
  await sleep(100)
  await assert.rejects(document.read({ waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' }, 'a reader does not pass a waiting writer')
  const state = await document.state()
  assert.equal(state.readerCount, 2)
  assert.equal(state.waitingWriters, 1)
  await first.release()
  await second.release()
  const written = await writer
  assert.equal(written.mode, 'write')
  assert.equal(server.cli('GET', 'doc'), written.token, 'the write lock is the key\'s plain lock')
  assert.equal(await locks.lock('doc', 1000), null, 'a plain lock on the key is excluded')
  await written.release()
  assert.equal(await document.usingRead(async (lock) => lock.mode), 'read')
  assert.equal(await document.usingWrite({ ttl: 2000 }, async (lock) => lock.mode), 'write')
  assert.equal((await document.state()).readerCount, 0)
})

test('read-write lock: downgrade without a gap, upgrade only for the only reader', async () => {
  const document = locks.rwlock('doc')
  const lock = await document.write()
  const fence = lock.fence
  await lock.downgrade()
  assert.equal(lock.mode, 'read')
  const other = await document.read({ waitTimeout: 0 })
  await assert.rejects(lock.upgrade(), { code: 'ERR_RELOCK_UPGRADE_REFUSED', message: /1 other reader/ })
  assert.equal(lock.mode, 'read')
  await other.release()
  await lock.upgrade()
  assert.equal(lock.mode, 'write')
  assert.ok(lock.fence > fence, `the upgrade's fence ${lock.fence} follows ${fence}`)
  assert.equal(server.cli('GET', 'doc'), lock.token)
  await lock.release()
  await assert.rejects(lock.downgrade(), { code: 'ERR_RELOCK_LOCK_LOST', message: /already released/ })
})

test('read-write lock: fair mode serves readers and writers in arrival order', async () => {
  const document = locks.rwlock('doc')
  const holder = await document.write({ fair: true })
  const served = []
  const waiters = [['r1', 'read'], ['w2', 'write'], ['r3', 'read'], ['r4', 'read']].map(([name, mode], index) =>
    sleep(50 * index).then(async () => {
      const lock = await (mode === 'read' ? document.read({ fair: true }) : document.write({ fair: true }))
      served.push(name)
      await sleep(100)
      served.push('out')
      await lock.release()
    }))
  await sleep(300)
  assert.deepEqual((await document.state()).queue.map((entry) => entry.mode), ['read', 'write', 'read', 'read'])
  await holder.release()
  await Promise.all(waiters)
  assert.deepEqual(served.slice(0, 4), ['r1', 'out', 'w2', 'out'])
  assert.deepEqual(served.slice(4, 6).sort(), ['r3', 'r4'], 'r3 and r4 read together')
})

test('semaphore: permits counted, handed back, available(), bad input refused with codes', async () => {
  const pool = locks.semaphore('pool', { permits: 3 })
  const two = await pool.acquire({ permits: 2 })
  assert.ok(two instanceof PermitHandle)
  assert.equal(two.permits, 2)
  assert.equal(await pool.available(), 1)
  await assert.rejects(pool.acquire({ permits: 2, waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
  const waiting = pool.acquire({ permits: 2, waitTimeout: 5000 })
  await sleep(100)
  const releasedAt = performance.now()
  await two.release()
  const next = await waiting
  assert.ok(performance.now() - releasedAt < 500, 'woken by the release')
  assert.deepEqual((await pool.state()).holders.map((holder) => holder.permits), [2])
  assert.equal(await pool.using(async (held) => held.permits), 1)
  await next.release()
  assert.equal(await pool.available(), 3)

  assert.throws(() => locks.semaphore('pool'), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  assert.throws(() => locks.semaphore('pool', { permits: 3, limit: 2 }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.semaphore('pool', { permits: 0 }).acquire(), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.semaphore('pool', { permits: 2.5 }).acquire(), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(pool.acquire({ permits: 4 }), { code: 'ERR_RELOCK_INVALID_ARGUMENT', message: /never grant 4/ })
  await assert.rejects(pool.acquire({ permits: 0 }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(pool.acquire({ permits: '1' }), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
})

test('semaphore: lowering permits keeps current holders and admits nobody until use falls below it', async () => {
  const wide = locks.semaphore('pool', { permits: 3 })
  const held = await Promise.all([wide.acquire(), wide.acquire(), wide.acquire()])
  const narrow = locks.semaphore('pool', { permits: 2 })
  assert.equal(await narrow.available(), 0)
  await held[0].release()
  await assert.rejects(narrow.acquire({ waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' }, '2 in use of 2')
  await held[1].release()
  const admitted = await narrow.acquire({ waitTimeout: 0 })
  await Promise.all([admitted.release(), held[2].release()])
})

test('operators see a semaphore as one: inspect marks it, list finds it, forceRelease leaves it alone', async () => {
  const pool = locks.semaphore('jobs:pool', { permits: 2 })
  const held = await pool.acquire()
  const [state] = await locks.inspect('jobs:pool')
  assert.equal(state.semaphore, true)
  assert.equal(state.foreign, false, 'a semaphore is relock\'s, not application data')
  assert.equal(state.holder, null)
  const token = await locks.lock('jobs:lock', 5000)
  server.cli('ZADD', 'jobs:other', '1', 'x') // application data of the same type
  assert.deepEqual([...(await locks.list('jobs:*'))].sort(), ['jobs:lock', 'jobs:pool'])
  await assert.rejects(locks.forceRelease('jobs:pool'), { code: 'ERR_RELOCK_INVALID_ARGUMENT', message: /is a semaphore/ })
  assert.equal((await pool.state()).inUse, 1, 'the permits are still held')
  assert.equal((await locks.inspect('jobs:other'))[0].foreign, true)
  await held.release()
  await locks.unlock('jobs:lock', token)
})

test('operators see a read-write lock held by readers only: list finds it, inspect counts its readers', async () => {
  const tagged = locks.rwlock('docs:{7}:page')
  const plain = locks.rwlock('docs:manual')
  const readers = [await plain.read(), await plain.read(), await tagged.read()]
  const writer = await locks.rwlock('docs:draft').write()
  await locks.rwlock('docs:gone').read({ ttl: 100, watchdog: false })
  await sleep(250) // that reader's lease ran out: nobody holds docs:gone any more
  assert.deepEqual([...(await locks.list('docs:*'))].sort(), ['docs:draft', 'docs:manual', 'docs:{7}:page'])
  assert.deepEqual([...(await locks.list('docs:m*'))], ['docs:manual'])
  const [state] = await locks.inspect('docs:manual')
  assert.equal(state.readers, 2)
  assert.equal(state.holder, null)
  assert.equal(state.foreign, false)
  assert.equal((await locks.inspect('docs:{7}:page'))[0].readers, 1)
  assert.equal((await locks.inspect('docs:draft'))[0].readers, 0)
  assert.equal((await locks.inspect('docs:gone'))[0].readers, 0)
  await Promise.all([...readers, writer].map((hold) => hold.release()))
  assert.deepEqual([...(await locks.list('docs:*'))], [])

  // Each name once, and only names the pattern matches (`{x}` keeps readers of its own).
  server.cli('FLUSHALL')
  const held = await Promise.all(['a', 'b', '{c}', '{a}'].map((name) => locks.rwlock(name).read()))
  assert.deepEqual([...(await locks.list('*', { limit: 4 }))].sort(), ['a', 'b', '{a}', '{c}'])
  assert.deepEqual([...(await locks.list('?a?'))], ['{a}'])
  assert.deepEqual([...(await locks.list('{*'))].sort(), ['{a}', '{c}'])
  assert.equal((await locks.inspect('{a}'))[0].readers, 1)
  await Promise.all(held.map((hold) => hold.release()))
})

test('a SIGKILLed holder of permits or of a read lock frees them within its ttl', async () => {
  for (const hold of ['permits', 'read']) {
    server.cli('FLUSHALL')
    const child = fork(path.join(__dirname, 'fixtures', 'primitive-worker.js'), [server.url, '0', JSON.stringify({ hold, permits: 2, ttl: 1000 }), '0'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    await new Promise((resolve) => child.on('message', (message) => message.held && resolve()))
    child.kill('SIGKILL')
    const started = performance.now()
    const lock = hold === 'read' ? await locks.rwlock('rw:doc').write({ waitTimeout: 5000 }) : await locks.semaphore('sem:pool', { permits: 2 }).acquire({ permits: 2, waitTimeout: 5000 })
    const waited = performance.now() - started
    assert.ok(waited < 1000 + 500, `${hold}: free after ${waited.toFixed(0)} ms (ttl 1000)`)
    assert.ok(waited > 300, `${hold}: the killed holder's lease counted (${waited.toFixed(0)} ms)`)
    await lock.release()
  }
})

test('multi-key: all keys or none, a fence per key, lock and unlock over arrays', async () => {
  const token = await locks.lock('b', 5000)
  assert.equal(await locks.lock(['a', 'b', 'c'], 5000), null)
  assert.equal(server.cli('EXISTS', 'a', 'c'), '0', 'nothing was taken')
  await assert.rejects(locks.acquire(['c', 'b'], { waitTimeout: 0 }), { code: 'ERR_RELOCK_WAIT_TIMEOUT' })
  const waiting = locks.acquire(['c', 'b', 'a'], { waitTimeout: 5000 })
  await sleep(100)
  assert.equal(server.cli('EXISTS', 'a', 'c'), '0', 'nothing is held while waiting')
  await locks.unlock('b', token)
  const lock = await waiting
  assert.deepEqual(lock.keys, ['c', 'b', 'a'])
  assert.equal(lock.fences.length, 3)
  assert.ok(lock.fences.every((fence) => fence >= 1))
  for (const key of ['a', 'b', 'c']) assert.equal(server.cli('GET', key), lock.token)
  await lock.release()
  const many = await locks.lock(['x', 'y'], 5000)
  assert.equal(await locks.unlock(['x', 'y'], many), true)
  assert.equal(await locks.unlock(['x', 'y'], many), false)
  assert.deepEqual(await locks.using(['x', 'y'], async (held) => held.keys), ['x', 'y'])

  await assert.rejects(locks.acquire(['a', 'a']), { code: 'ERR_RELOCK_INVALID_ARGUMENT', message: /named twice/ })
  await assert.rejects(locks.acquire([]), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.acquire(['a', 7]), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.lock(['a', null], 1000), { code: 'ERR_RELOCK_INVALID_ARGUMENT' })
  await assert.rejects(locks.acquire(['a', 'b'], { fair: true }), { code: 'ERR_RELOCK_UNSUPPORTED' })
})

test('lock over an array on a paused host fails within commandTimeout, and what it took is given back', async () => {
  assert.ok(await locks.lock(['p:a', 'p:b'], 5000), 'the connection is up')
  server.cli('FLUSHALL')
  server.signal('SIGSTOP')
  const started = performance.now()
  try {
    await assert.rejects(locks.lock(['p:a', 'p:b'], 5000), { code: 'ERR_RELOCK_TIMEOUT' })
    assert.ok(performance.now() - started < 500 + 250, `answered after ${Math.round(performance.now() - started)} ms (commandTimeout 500)`)
  } finally {
    server.signal('SIGCONT')
  }
  // The late attempt ran once the host resumed, and its undo right after it.
  await sleep(100)
  assert.equal(server.cli('EXISTS', 'p:a', 'p:b'), '0')
})

test('over several Redlock hosts the new primitives are refused with ERR_RELOCK_UNSUPPORTED', async () => {
  const hosts = await startServers(3)
  const redlock = new Redlock(hosts.map((host) => host.url))
  try {
    await assert.rejects(redlock.rwlock('doc').read(), { code: 'ERR_RELOCK_UNSUPPORTED', message: /single Redis host/ })
    await assert.rejects(redlock.semaphore('pool', { permits: 2 }).acquire(), { code: 'ERR_RELOCK_UNSUPPORTED' })
    await assert.rejects(redlock.acquire(['a', 'b']), { code: 'ERR_RELOCK_UNSUPPORTED' })
    await assert.rejects(redlock.lock(['a', 'b'], 1000), { code: 'ERR_RELOCK_UNSUPPORTED' })
  } finally {
    await redlock.close()
    await Promise.all(hosts.map((host) => host.stop()))
  }
})

// Holds of the history that overlap in time.
function overlapping(records) {
  const pairs = []
  for (let i = 0; i < records.length; i++) {
    for (let j = i + 1; j < records.length; j++) {
      if (records[i].start < records[j].end && records[j].start < records[i].end) pairs.push([records[i], records[j]])
    }
  }
  return pairs
}

test('4 processes on a read-write lock, a semaphore and multi-key locks at once: every rule holds over the whole history', async () => {
  const permits = 3
  const results = await runWorkers('primitive-worker.js', 4, [server.url, '30', JSON.stringify({ permits })])
  const records = results.flatMap((result) => result.records)

  const rw = records.filter((record) => record.kind === 'rw')
  for (const [a, b] of overlapping(rw)) {
    assert.ok(a.mode === 'read' && b.mode === 'read', `a ${a.mode} hold overlapped a ${b.mode} hold`)
  }
  const writes = rw.filter((record) => record.mode === 'write').sort((a, b) => a.start - b.start)
  for (let i = 1; i < writes.length; i++) assert.ok(writes[i].fence > writes[i - 1].fence, 'write fences grow')
  assert.ok(overlapping(rw.filter((record) => record.mode === 'read')).length > 0, 'readers shared the lock')

  const semaphore = records.filter((record) => record.kind === 'semaphore')
  const events = semaphore.flatMap((record) => [[record.start, record.permits], [record.end, -record.permits]]).sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let inUse = 0
  let most = 0
  for (const [, change] of events) {
    inUse += change
    most = Math.max(most, inUse)
  }
  assert.ok(most <= permits, `${most} permits were in use at once, of ${permits}`)

  const multi = records.filter((record) => record.kind === 'multi')
  for (const [a, b] of overlapping(multi)) {
    const shared = a.keys.filter((key) => b.keys.includes(key))
    assert.deepEqual(shared, [], `${shared} held by two at once`)
  }
  assert.equal(records.length, 120)
  assert.ok(rw.length > 0 && semaphore.length > 0 && multi.length > 0)
})
