'use strict'

// Every lock library under test, behind one small interface so that the scenarios measure the
// libraries and not the harness:
//
//   const locker = await variant.create({ urls, waitMs })
//   const ticket = await locker.lock(key)   // waits until it holds `key`
//   await locker.unlock(key, ticket)
//   await locker.close()
//
// `urls` holds one Redis URL, or several for Redlock. `waitMs` is the budget of a blocking wait
// (scenario 4); without it each library waits as long as its own defaults let it.
//
// Each peer runs twice: with its documented defaults, and tuned for speed (short pauses between
// attempts), so that a slow default does not decide the comparison.

const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')

const LOCK_TTL_MS = 5000

// Pauses between attempts of the tuned peers: 5–15 ms for the Redlock family (delay ± jitter),
// 5 ms for the fixed-interval ones.
const TUNED_REDLOCK_RETRY = { retryDelay: 10, retryJitter: 5 }
const TUNED_RETRY_INTERVAL_MS = 5

// The recipe of ioredis-plain waits this long between attempts unless tuned, and gives up after
// this long unless given a budget.
const PLAIN_RECIPE_RETRY_MS = 100
const PLAIN_RECIPE_WAIT_MS = 10000

const COMPARE_AND_DELETE_LUA = `
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0`

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const PROJECT_ROOT = path.join(__dirname, '..', '..')

// Read from disk: a package with an `exports` map (redlock 5) does not export its package.json.
function installedVersion(name) {
  const manifest = path.join(PROJECT_ROOT, 'node_modules', name, 'package.json')
  return JSON.parse(fs.readFileSync(manifest, 'utf8')).version
}

// Packages are loaded lazily and once, so that one that fails to load only removes its rows.
const loaded = new Map()

function loadPackage(name) {
  if (!loaded.has(name)) {
    try {
      loaded.set(name, { module: require(name), version: installedVersion(name) })
    } catch (error) {
      loaded.set(name, { error: error.message.split('\n')[0] })
    }
  }
  const entry = loaded.get(name)
  if (entry.error) throw new Error(`${name} did not load: ${entry.error}`)
  return entry
}

function relockPackage() {
  return { module: require(PROJECT_ROOT), version: require(path.join(PROJECT_ROOT, 'package.json')).version }
}

function ioredisClients(urls) {
  const Redis = loadPackage('ioredis').module
  return urls.map((url) => new Redis(url))
}

function disconnectAll(clients) {
  for (const client of clients) client.disconnect()
}

function createRelockPlain({ urls }) {
  const { Redlock } = relockPackage().module
  const locks = new Redlock(urls)
  return {
    async lock(key) {
      const token = await locks.lock(key, LOCK_TTL_MS)
      if (token === null) throw new Error(`relock: ${key} is already held`)
      return token
    },
    unlock: (key, token) => locks.unlock(key, token),
    close: () => locks.close(),
  }
}

function createRelockHandle({ urls, waitMs }, fair) {
  const { Redlock } = relockPackage().module
  const locks = new Redlock(urls)
  const options = { ttl: LOCK_TTL_MS, fair, ...(waitMs && { waitTimeout: waitMs }) }
  return {
    lock: (key) => locks.acquire(key, options),
    unlock: (key, lock) => lock.release(),
    close: () => locks.close(),
  }
}

// node-redlock 4: callback and bluebird API. retryCount -1 retries without limit, its documented
// way to wait for a lock.
function createRedlock4({ urls, waitMs }, tuned) {
  const Redlock = loadPackage('redlock').module
  const clients = ioredisClients(urls)
  const redlock = new Redlock(clients, { ...(tuned && TUNED_REDLOCK_RETRY), ...(waitMs && { retryCount: -1 }) })
  redlock.on('clientError', () => {}) // a minority of failed hosts is not an error for Redlock
  return {
    lock: (key) => redlock.lock(key, LOCK_TTL_MS),
    unlock: (key, lock) => lock.unlock(),
    close: async () => disconnectAll(clients),
  }
}

// node-redlock 5 and its maintained fork share the v5 API: acquire([resources], duration).
function createRedlock5Api(packageName, exportName) {
  return ({ urls, waitMs }, tuned) => {
    const Redlock = loadPackage(packageName).module[exportName]
    const clients = ioredisClients(urls)
    const redlock = new Redlock(clients, { ...(tuned && TUNED_REDLOCK_RETRY), ...(waitMs && { retryCount: -1 }) })
    return {
      lock: (key) => redlock.acquire([key], LOCK_TTL_MS),
      unlock: (key, lock) => lock.release(),
      close: async () => disconnectAll(clients),
    }
  }
}

// redis-semaphore: Mutex on one host, RedlockMutex on several. Its defaults already retry every
// 10 ms; tuned halves that.
function createRedisSemaphore({ urls, waitMs }, tuned) {
  const { Mutex, RedlockMutex } = loadPackage('redis-semaphore').module
  const clients = ioredisClients(urls)
  const options = { ...(tuned && { lockTimeout: LOCK_TTL_MS, retryInterval: TUNED_RETRY_INTERVAL_MS }), ...(waitMs && { acquireTimeout: waitMs }) }
  const newMutex = clients.length === 1
    ? (key) => new Mutex(clients[0], key, options)
    : (key) => new RedlockMutex(clients, key, options)
  return {
    async lock(key) {
      const mutex = newMutex(key)
      await mutex.acquire()
      return mutex
    },
    unlock: (key, mutex) => mutex.release(),
    close: async () => disconnectAll(clients),
  }
}

// The recipe users write by hand with ioredis: SET NX PX with a uuid token, a Lua
// compare-and-delete to unlock, and a timer to retry while the key is busy. One host only.
function createIoredisPlain({ urls, waitMs = PLAIN_RECIPE_WAIT_MS }, tuned) {
  const [client] = ioredisClients(urls)
  client.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE_LUA })
  const retryMs = tuned ? TUNED_RETRY_INTERVAL_MS : PLAIN_RECIPE_RETRY_MS
  return {
    async lock(key) {
      const token = crypto.randomUUID()
      const giveUpAt = Date.now() + waitMs
      while ((await client.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') {
        if (Date.now() >= giveUpAt) throw new Error(`ioredis-plain: gave up waiting for ${key}`)
        await sleep(retryMs)
      }
      return token
    },
    unlock: (key, token) => client.compareAndDelete(key, token),
    close: async () => client.disconnect(),
  }
}

// `throughput`: runs in scenarios 1–3 (fresh keys); `contention`: runs in scenario 4 (one key,
// blocking waits); `multiHost`: runs over 3 and 5 hosts in scenario 3.
function peer(library, packageName, create, { multiHost = true } = {}) {
  return [false, true].map((tuned) => ({
    id: `${library} ${tuned ? 'tuned' : 'defaults'}`,
    library,
    packageName,
    isRelock: false,
    throughput: true,
    contention: true,
    multiHost,
    create: (setup) => create(setup, tuned),
  }))
}

function relock(id, create, { throughput, contention, multiHost }) {
  return { id, library: 'relock', packageName: null, isRelock: true, throughput, contention, multiHost, create }
}

const VARIANTS = [
  relock('relock lock/unlock', createRelockPlain, { throughput: true, contention: false, multiHost: true }),
  relock('relock acquire/release', (setup) => createRelockHandle(setup, false), { throughput: true, contention: true, multiHost: true }),
  relock('relock acquire fair', (setup) => createRelockHandle(setup, true), { throughput: false, contention: true, multiHost: false }),
  ...peer('redlock@4', 'redlock', createRedlock4),
  ...peer('redlock@5-beta', 'redlock5', createRedlock5Api('redlock5', 'default')),
  ...peer('@sesamecare-oss/redlock', '@sesamecare-oss/redlock', createRedlock5Api('@sesamecare-oss/redlock', 'Redlock')),
  ...peer('redis-semaphore', 'redis-semaphore', createRedisSemaphore),
  ...peer('ioredis-plain', 'ioredis', createIoredisPlain, { multiHost: false }),
]

// The row name of a variant: redis-semaphore is a different class over several hosts.
function rowName(variant, hostCount) {
  if (variant.library !== 'redis-semaphore') return variant.id
  return variant.id.replace('redis-semaphore', hostCount > 1 ? 'redis-semaphore RedlockMutex' : 'redis-semaphore Mutex')
}

function findVariant(id) {
  const variant = VARIANTS.find((candidate) => candidate.id === id)
  if (!variant) throw new Error(`unknown variant ${id}`)
  return variant
}

// Which variants can run here: a peer whose package does not load is left out, with the reason.
function availableVariants() {
  const available = []
  const unavailable = {}
  for (const variant of VARIANTS) {
    try {
      if (variant.packageName) loadPackage(variant.packageName)
      available.push(variant)
    } catch (error) {
      unavailable[variant.library] = error.message
    }
  }
  return { available, unavailable }
}

function libraryVersions() {
  const versions = { relock: relockPackage().version }
  for (const name of ['ioredis', 'redlock', 'redlock5', '@sesamecare-oss/redlock', 'redis-semaphore']) {
    try {
      versions[name] = installedVersion(name)
    } catch (error) {
      versions[name] = `not installed: ${error.message}`
    }
  }
  return versions
}

module.exports = { VARIANTS, LOCK_TTL_MS, COMPARE_AND_DELETE_LUA, findVariant, rowName, availableVariants, libraryVersions, ioredisClients }
