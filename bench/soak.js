'use strict'

// Soak: mixed load on relock for a bounded time, against a throwaway redis-server.
//
//   node bench/soak.js [--seconds 60] [--cycles 1000000] [--json]
//
// The load: lock/unlock loops on fresh keys; acquire/release on a few shared keys with short
// leases (so the watchdog renews) and short waits (so some time out); waits aborted through
// AbortSignal; and two other processes contending for one key with a read-modify-write counter.
// Every few seconds it samples RSS and V8 heap. At the end it reports operations done, errors by
// code, lost updates, and the memory samples; with --cycles it then runs that many lock/unlock
// cycles and reports RSS and heap growth after a warm-up. It exits non-zero if an error had an
// unexpected code, an update was lost, or a call overran its bound.

const { fork } = require('node:child_process')
const Redis = require('ioredis')
const { Redlock } = require('..')
const { RedisServer } = require('../tools/redis-server')

const EXPECTED_CODES = new Set(['ERR_RELOCK_WAIT_TIMEOUT', 'ABORT_ERR', 'ERR_RELOCK_LOCK_LOST'])
const CALL_BOUND_MS = 5000

function flag(name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10

async function startRedis() {
  const server = await RedisServer.start()
  const probe = new Redis(server.url)
  return { url: server.url, probe, stop: () => { probe.disconnect(); return server.stop() } }
}

// The contender processes: acquire, GET, SET+1, release, until told to stop.
async function contender() {
  const url = process.argv[3]
  const locks = new Redlock(url)
  const redis = new Redis(url)
  let running = true
  let done = 0
  process.on('message', () => { running = false })
  while (running) {
    await locks.using('soak:counter:lock', { ttl: 2000, waitTimeout: 30000 }, async () => {
      const value = Number(await redis.get('soak:counter'))
      await redis.set('soak:counter', String(value + 1))
    })
    done++
  }
  await locks.close()
  redis.disconnect()
  process.send({ done }, () => process.disconnect())
}

async function soak() {
  const seconds = flag('seconds', 60)
  const cycles = flag('cycles', 0)
  const redis = await startRedis()
  const locks = new Redlock(redis.url)
  const stats = { operations: 0, errors: {}, unexpected: [], slowestMs: 0, samples: [] }
  let running = true

  async function measured(call) {
    const started = performance.now()
    try {
      return await call()
    } catch (error) {
      stats.errors[error.code] = (stats.errors[error.code] ?? 0) + 1
      if (!EXPECTED_CODES.has(error.code)) stats.unexpected.push(`${error.code}: ${error.message}`)
      return null
    } finally {
      stats.operations++
      stats.slowestMs = Math.max(stats.slowestMs, performance.now() - started)
    }
  }

  const plainLoop = async (loop) => {
    for (let i = 0; running; i++) {
      const key = `soak:plain:${loop}:${i}`
      const token = await measured(() => locks.lock(key, 5000))
      if (token) await measured(() => locks.unlock(key, token))
    }
  }
  const handleLoop = async (loop) => {
    while (running) {
      const lock = await measured(() => locks.acquire(`soak:shared:${loop % 3}`, { ttl: 300, waitTimeout: 250 }))
      if (!lock) continue
      await sleep(Math.random() * 400) // longer than the lease: the watchdog must renew
      await measured(() => lock.release())
    }
  }
  const abortLoop = async () => {
    while (running) {
      await measured(() => locks.acquire('soak:shared:0', { waitTimeout: 10000, signal: AbortSignal.timeout(1 + Math.floor(Math.random() * 50)) }).then((lock) => lock.release()))
    }
  }

  const contenders = [0, 1].map(() => fork(__filename, ['contender', redis.url], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const sampler = setInterval(() => {
    const { rss, heapUsed } = process.memoryUsage()
    stats.samples.push({ second: Math.round(performance.now() / 1000), rssMb: mb(rss), heapMb: mb(heapUsed), operations: stats.operations })
    process.stderr.write(`soak: ${stats.operations} operations, rss ${mb(rss)} MB, heap ${mb(heapUsed)} MB\n`)
  }, Math.max(1000, (seconds * 1000) / 12))

  const loops = [
    ...Array.from({ length: 32 }, (_, i) => plainLoop(i)),
    ...Array.from({ length: 6 }, (_, i) => handleLoop(i)),
    abortLoop(),
  ]
  await sleep(seconds * 1000)
  running = false
  await Promise.all(loops)
  clearInterval(sampler)
  const contended = await Promise.all(contenders.map((child) => new Promise((resolve) => {
    child.once('message', (message) => resolve(message.done))
    child.send('stop')
  })))
  const counter = Number(await redis.probe.get('soak:counter'))
  const contendedTotal = contended.reduce((sum, done) => sum + done, 0)

  const report = {
    seconds,
    operations: stats.operations,
    errorsByCode: stats.errors,
    unexpectedErrors: stats.unexpected.slice(0, 10),
    slowestCallMs: Math.round(stats.slowestMs),
    contendedAcquisitions: contendedTotal,
    lostUpdates: contendedTotal - counter,
    memory: stats.samples,
  }
  if (cycles > 0) report.cycles = await memoryOverCycles(locks, cycles)
  await locks.close()
  await redis.stop()

  console.log(process.argv.includes('--json') ? JSON.stringify(report) : JSON.stringify(report, null, 2))
  const failed = report.unexpectedErrors.length > 0 || report.lostUpdates !== 0 || report.slowestCallMs > CALL_BOUND_MS
  process.exitCode = failed ? 1 : 0
}

// RSS and heap over `cycles` lock/unlock cycles on 64 concurrent loops, after a warm-up.
async function memoryOverCycles(locks, cycles) {
  const run = async (count) => {
    const perLoop = Math.ceil(count / 64)
    await Promise.all(Array.from({ length: 64 }, async (_, loop) => {
      for (let i = 0; i < perLoop; i++) {
        const key = `soak:cycle:${loop}:${i}`
        const token = await locks.lock(key, 5000)
        await locks.unlock(key, token)
      }
    }))
  }
  const snapshot = () => {
    if (global.gc) global.gc()
    const { rss, heapUsed } = process.memoryUsage()
    return { rssMb: mb(rss), heapMb: mb(heapUsed) }
  }
  await run(Math.min(100_000, cycles))
  const before = snapshot()
  const started = performance.now()
  await run(cycles)
  const seconds = (performance.now() - started) / 1000
  const after = snapshot()
  return { cycles, seconds: Math.round(seconds), before, after, rssGrowthMb: mb((after.rssMb - before.rssMb) * 1048576), heapGrowthMb: mb((after.heapMb - before.heapMb) * 1048576) }
}

if (process.argv[2] === 'contender') {
  contender().catch((error) => { console.error(error); process.exit(1) })
} else {
  soak().catch((error) => { console.error(error); process.exit(1) })
}
