'use strict'

// The Redis deployments under test. Every lock host sits behind a TCP proxy (clients use the
// proxy URL) so network faults can be injected; the checker itself talks to the real ports.
// Some hosts persist every write (AOF, fsync always) and some keep nothing across a restart,
// so both restart variants are exercised.

const { Proxy } = require('../__test__/helpers/proxy')
const { Host } = require('./hosts')
const { respOnce } = require('./resp')

const TOPOLOGIES = [
  { name: 'one', persistent: [true] },
  { name: 'rl3', persistent: [true, true, false] },
  { name: 'rl5', persistent: [true, true, true, false, false] },
]
const KEYS_PER_TOPOLOGY = 3

// `{lk:…:0}` hashes like `lk:…:0` and relock keeps the side keys of both under one tag: a lock
// of one must never be handed to a waiter of the other.
function lockKeys(topology) {
  const keys = Array.from({ length: KEYS_PER_TOPOLOGY }, (_, i) => `lk:${topology}:${i}`)
  return [...keys, `{${keys[0]}}`]
}

// Read-write locks and semaphores need one host: only the single-host topology has them (with
// a braced twin each, as for locks).
function readWriteKeys(topology) {
  return topology === 'one' ? ['rw:one:0', 'rw:one:1', '{rw:one:0}'] : []
}

function semaphoreKeys(topology) {
  return topology === 'one' ? ['sem:one:0', '{sem:one:0}'] : []
}

// Keys that multi-key locks take together, shared with single-key `lock` but not with the fair
// waiters, which keep the other keys held nearly all the time.
function multiKeys(topology) {
  return topology === 'one' ? ['lk:one:3', '{lk:one:3}', 'lk:one:4'] : []
}

// Semaphores of the checker have this many permits.
const SEMAPHORE_PERMITS = 3

// A write-locked read-write lock is a plain lock too, and list() finds semaphores as well.
const isLockKey = (key) => /^(lk|rw|sem):[a-z0-9]+:\d+$|^\{(lk|rw|sem):[a-z0-9]+:\d+\}$/.test(key)

// Application data of other types that the lock library must never touch.
const APP_KEYS = [
  { key: 'user:1', write: ['SET', 'user:1', 'alice'], read: ['GET', 'user:1'], expect: 'alice' },
  { key: 'app:hash', write: ['HSET', 'app:hash', 'name', 'alice'], read: ['HGET', 'app:hash', 'name'], expect: 'alice' },
  { key: 'app:list', write: ['RPUSH', 'app:list', 'a'], read: ['LINDEX', 'app:list', '0'], expect: 'a' },
  { key: 'app:set', write: ['SADD', 'app:set', 'x'], read: ['SISMEMBER', 'app:set', 'x'], expect: 1 },
  { key: 'app:zset', write: ['ZADD', 'app:zset', '1', 'a'], read: ['ZSCORE', 'app:zset', 'a'], expect: '1' },
]

async function writeAppKeys(port) {
  for (const { key, write } of APP_KEYS) {
    await respOnce(port, ['DEL', key])
    await respOnce(port, write)
  }
}

/** Problems with the application keys on one host (empty when intact). */
async function checkAppKeys(port) {
  const problems = []
  for (const { key, read, expect } of APP_KEYS) {
    const value = await respOnce(port, read).catch((error) => `error: ${error.message}`)
    if (value !== expect) problems.push(`${key}: expected ${JSON.stringify(expect)}, found ${JSON.stringify(value)}`)
  }
  return problems
}

async function startTopologies(debugCommand) {
  const topologies = []
  for (const { name, persistent } of TOPOLOGIES) {
    const hosts = []
    for (let i = 0; i < persistent.length; i++) {
      const host = await Host.start({ persistent: persistent[i], debugCommand, name: `${name}/${i}` })
      host.proxy = await Proxy.start(host.port)
      await writeAppKeys(host.port)
      hosts.push(host)
    }
    topologies.push({ name, hosts, keys: lockKeys(name), rwKeys: readWriteKeys(name), semaphoreKeys: semaphoreKeys(name), multiKeys: multiKeys(name) })
  }
  return topologies
}

/** What a client process needs to know: where to connect, and the real ports for its checks. */
function describeTopologies(topologies) {
  return topologies.map(({ name, hosts, keys, rwKeys, semaphoreKeys, multiKeys }) => ({
    name,
    keys,
    rwKeys,
    semaphoreKeys,
    multiKeys,
    urls: hosts.map((host) => host.proxy.url),
    ports: hosts.map((host) => host.port),
  }))
}

async function stopTopologies(topologies) {
  for (const { hosts } of topologies) {
    for (const host of hosts) {
      if (host.proxy) await host.proxy.close().catch(() => {})
      await host.stop().catch(() => {})
    }
  }
}

module.exports = { TOPOLOGIES, lockKeys, isLockKey, SEMAPHORE_PERMITS, APP_KEYS, writeAppKeys, checkAppKeys, startTopologies, describeTopologies, stopTopologies }
