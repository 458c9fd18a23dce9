'use strict'

// relock's demo: 4 Node cluster workers increment one shared counter in Redis with a
// read-modify-write (GET, compute, SET). Without a lock, updates get lost; with relock, none do.
// It starts its own throwaway redis-server on a free loopback port and stops it at the end.

const cluster = require('node:cluster')
const Redis = require('ioredis')
const { Redlock } = require('..')
const { RedisServer } = require('../tools/redis-server')

const WORKERS = 4
const ROUNDS = 250

async function increment(redis, times, locks) {
  for (let i = 0; i < times; i++) {
    let token = null
    if (locks) {
      while (!(token = await locks.lock('demo:counter:lock', 5000))) {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 2))
      }
    }
    const value = Number(await redis.get('demo:counter'))
    await new Promise((resolve) => setImmediate(resolve)) // "compute": let the others run
    await redis.set('demo:counter', String(value + 1))
    if (locks) await locks.unlock('demo:counter:lock', token)
  }
}

async function worker() {
  const redis = new Redis(process.env.DEMO_REDIS_URL)
  const locks = new Redlock(process.env.DEMO_REDIS_URL)
  process.on('message', async (phase) => {
    await increment(redis, ROUNDS, phase === 'locked' ? locks : null)
    process.send('done')
    if (phase === 'locked') {
      await locks.close()
      redis.disconnect()
    }
  })
  process.send('ready')
}

async function startRedis() {
  const server = await RedisServer.start()
  const probe = new Redis(server.url)
  return { url: server.url, probe, stop: () => { probe.disconnect(); return server.stop() } }
}

async function runPhase(workers, phase) {
  await Promise.all(workers.map((w) => new Promise((resolve) => {
    w.once('message', resolve)
    w.send(phase)
  })))
}

async function primary() {
  const redis = await startRedis()
  try {
    console.log(`redis-server started at ${redis.url}`)
    console.log(`${WORKERS} cluster workers × ${ROUNDS} increments, each a GET then a SET of one shared counter\n`)
    const workers = await Promise.all(Array.from({ length: WORKERS }, () => {
      const w = cluster.fork({ DEMO_REDIS_URL: redis.url })
      return new Promise((resolve) => w.once('message', () => resolve(w)))
    }))
    const expected = WORKERS * ROUNDS

    await redis.probe.set('demo:counter', '0')
    await runPhase(workers, 'unlocked')
    const unlocked = Number(await redis.probe.get('demo:counter'))
    console.log(`without a lock: counter = ${unlocked} of ${expected}  → ${expected - unlocked} updates lost`)

    await redis.probe.set('demo:counter', '0')
    const started = performance.now()
    await runPhase(workers, 'locked')
    const locked = Number(await redis.probe.get('demo:counter'))
    const seconds = (performance.now() - started) / 1000
    console.log(`with relock:    counter = ${locked} of ${expected}  → ${expected - locked} updates lost (${Math.round(expected / seconds)} locked increments/s)`)

    for (const w of workers) w.kill()
    process.exitCode = locked === expected ? 0 : 1
  } finally {
    await redis.stop()
  }
}

if (cluster.isPrimary) {
  primary().catch((error) => {
    console.error(error.message)
    process.exit(1)
  })
} else {
  worker().catch((error) => {
    console.error(error)
    process.exit(1)
  })
}
