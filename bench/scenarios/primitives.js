'use strict'

// Scenario 8: the primitives beside the libraries that offer them, 64 concurrent loops on one
// host, each cycle a take and a give-back: semaphores (redis-semaphore's Semaphore and
// MultiSemaphore), multi-key locks (node-redlock 5's acquire([a, b])), and relock's read and
// write locks beside its mutex. Semaphores share one key with permits to spare, so nobody
// waits; locks take fresh keys every cycle.

const { runThroughputTable } = require('./throughput')
const { ioredisClients, LOCK_TTL_MS } = require('../lib/libraries')

const SEMAPHORE_KEY = 'bench:semaphore'
const SEMAPHORE_PERMITS = 1000
const TUNED_RETRY_INTERVAL_MS = 5
const TUNED_REDLOCK_RETRY = { retryDelay: 10, retryJitter: 5 }

const disconnectAll = (clients) => clients.forEach((client) => client.disconnect())

function relockVariant(id, make) {
  return {
    id, library: 'relock', isRelock: true, throughput: true, multiHost: false,
    create: ({ urls }) => {
      const { Redlock } = require('../..')
      const locks = new Redlock(urls)
      return { ...make(locks), close: () => locks.close() }
    },
  }
}

function peerVariants(library, make) {
  return [false, true].map((tuned) => ({
    id: `${library} ${tuned ? 'tuned' : 'defaults'}`, library, isRelock: false, throughput: true, multiHost: false,
    create: ({ urls }) => {
      const clients = ioredisClients(urls)
      return { ...make(clients, tuned), close: async () => disconnectAll(clients) }
    },
  }))
}

function redisSemaphore(className, permits) {
  return (clients, tuned) => {
    const Class = require('redis-semaphore')[className]
    const options = { lockTimeout: LOCK_TTL_MS, ...(tuned && { retryInterval: TUNED_RETRY_INTERVAL_MS }) }
    return {
      async lock() {
        const semaphore = permits === 1
          ? new Class(clients[0], SEMAPHORE_KEY, SEMAPHORE_PERMITS, options)
          : new Class(clients[0], SEMAPHORE_KEY, SEMAPHORE_PERMITS, permits, options)
        await semaphore.acquire()
        return semaphore
      },
      unlock: (key, semaphore) => semaphore.release(),
    }
  }
}

function redlock5(packageName, exportName) {
  return (clients, tuned) => {
    const Redlock = require(packageName)[exportName]
    const redlock = new Redlock(clients, { ...(tuned && TUNED_REDLOCK_RETRY) })
    return {
      lock: (key) => redlock.acquire([`${key}:a`, `${key}:b`], LOCK_TTL_MS),
      unlock: (key, lock) => lock.release(),
    }
  }
}

function tables() {
  const semaphoreOptions = (permits) => ({ permits, ttl: LOCK_TTL_MS })
  return [
    {
      id: 's8-semaphore', title: `Semaphore, 1 permit of ${SEMAPHORE_PERMITS}, 64 loops`,
      variants: [
        relockVariant('relock semaphore', (locks) => {
          const pool = locks.semaphore(SEMAPHORE_KEY, { permits: SEMAPHORE_PERMITS })
          return { lock: () => pool.acquire(semaphoreOptions(1)), unlock: (key, held) => held.release() }
        }),
        ...peerVariants('redis-semaphore Semaphore', redisSemaphore('Semaphore', 1)),
      ],
    },
    {
      id: 's8-multisemaphore', title: `Semaphore, 2 permits of ${SEMAPHORE_PERMITS}, 64 loops`,
      variants: [
        relockVariant('relock semaphore', (locks) => {
          const pool = locks.semaphore(SEMAPHORE_KEY, { permits: SEMAPHORE_PERMITS })
          return { lock: () => pool.acquire(semaphoreOptions(2)), unlock: (key, held) => held.release() }
        }),
        ...peerVariants('redis-semaphore MultiSemaphore', redisSemaphore('MultiSemaphore', 2)),
      ],
    },
    {
      id: 's8-multikey', title: 'Two keys at once, 64 loops',
      variants: [
        relockVariant('relock acquire([a, b])', (locks) => ({
          lock: (key) => locks.acquire([`${key}:a`, `${key}:b`], { ttl: LOCK_TTL_MS }),
          unlock: (key, lock) => lock.release(),
        })),
        relockVariant('relock lock([a, b])', (locks) => ({
          async lock(key) {
            const token = await locks.lock([`${key}:a`, `${key}:b`], LOCK_TTL_MS)
            if (token === null) throw new Error(`relock: ${key} is already held`)
            return token
          },
          unlock: (key, token) => locks.unlock([`${key}:a`, `${key}:b`], token),
        })),
        ...peerVariants('redlock@5-beta', redlock5('redlock5', 'default')),
        ...peerVariants('@sesamecare-oss/redlock', redlock5('@sesamecare-oss/redlock', 'Redlock')),
      ],
    },
    {
      id: 's8-rwlock', title: 'Read and write locks beside the mutex, 64 loops',
      variants: [
        relockVariant('relock acquire/release', (locks) => ({
          lock: (key) => locks.acquire(key, { ttl: LOCK_TTL_MS }),
          unlock: (key, lock) => lock.release(),
        })),
        relockVariant('relock read/release', (locks) => ({
          lock: (key) => locks.rwlock(key).read({ ttl: LOCK_TTL_MS }),
          unlock: (key, lock) => lock.release(),
        })),
        relockVariant('relock write/release', (locks) => ({
          lock: (key) => locks.rwlock(key).write({ ttl: LOCK_TTL_MS }),
          unlock: (key, lock) => lock.release(),
        })),
      ],
    },
  ]
}

async function runPrimitives({ host, rounds, durationMs, warmupMs, flushHosts }) {
  const results = { tables: [] }
  for (const table of tables()) {
    results.tables.push(await runThroughputTable({ id: table.id, title: table.title, hosts: [host], loops: 64, variants: table.variants, rounds, durationMs, warmupMs, flushHosts }))
  }
  return results
}

module.exports = { runPrimitives }
