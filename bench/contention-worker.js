'use strict'

// One of the processes of scenario 4, forked by scenarios/contention.js. It receives its setup,
// connects and warms up, says 'ready', and on 'go' does `iterations` × (blocking acquire,
// GET counter, SET counter + 1, release) on the shared key. It reports the wall-clock time each
// wait began and each acquisition happened, so that the parent can merge all the workers.

const { findVariant, ioredisClients } = require('./lib/libraries')

const wallClock = () => performance.timeOrigin + performance.now()

async function incrementUnderLock(locker, redis, setup) {
  const acquisitions = []
  let increments = 0
  let error = null
  const startedAt = wallClock()
  try {
    for (let i = 0; i < setup.iterations; i++) {
      const waitStart = wallClock()
      const ticket = await locker.lock(setup.lockKey)
      const acquiredAt = wallClock()
      const value = Number(await redis.get(setup.counterKey))
      await redis.set(setup.counterKey, String(value + 1))
      increments++
      await locker.unlock(setup.lockKey, ticket)
      acquisitions.push([waitStart, acquiredAt])
    }
  } catch (failure) {
    error = failure.message
  }
  return { acquisitions, increments, error, startedAt, finishedAt: wallClock() }
}

async function main(setup) {
  const locker = await findVariant(setup.variantId).create({ urls: setup.urls, waitMs: setup.waitMs })
  const [redis] = ioredisClients(setup.urls.slice(0, 1))
  // Connect both clients (and load the library's scripts) before the timed part.
  const warmupKey = `${setup.lockKey}:warmup:${setup.workerIndex}`
  await locker.unlock(warmupKey, await locker.lock(warmupKey))
  await redis.get(setup.counterKey)
  process.send({ type: 'ready' })
  await new Promise((resolve) => process.once('message', resolve))
  const report = await incrementUnderLock(locker, redis, setup)
  process.send({ type: 'done', ...report })
  await locker.close()
  redis.disconnect()
  process.disconnect()
}

// The parent gone means the run was abandoned: do not linger.
process.once('disconnect', () => process.exit(0))
process.once('message', (setup) => {
  main(setup).catch((error) => {
    process.send({ type: 'failed', error: error.message })
    process.exit(1)
  })
})
