'use strict'

// Short deterministic situations, run by the orchestrator on quiet hosts before the clients
// start, for promises that random faults rarely set up cleanly. Each probe records what it
// measured; history.js judges it.
//
// Redlock answers "as soon as the outcome is decided: a slow or dead host never delays it"
// (README). With one of 3 hosts stopped (SIGSTOP), the other two decide every lock call alone:
// a key both of them hold is busy, a key neither holds is taken.

const { fork } = require('node:child_process')
const path = require('node:path')
const { Redlock } = require('..')
const { now, sleep } = require('./clock')
const { CONNECT_TIMEOUT_MS, COMMAND_TIMEOUT_MS, CALL_SLACK_MS, FAIR_LIVENESS_MS, FAIR_SLACK_MS, COMMANDS_PER_WAITER_PER_S } = require('./bounds')
const { respOnce } = require('./resp')

// A decided answer needs one round trip to the healthy hosts; the slack absorbs scheduling.
const DECIDED_ANSWER_BOUND_MS = CALL_SLACK_MS

async function timedLock(locks, key, ttl) {
  const start = now()
  try {
    const token = await locks.lock(key, ttl)
    return { took: now() - start, outcome: token === null ? 'busy' : 'taken', token }
  } catch (error) {
    return { took: now() - start, outcome: error.code }
  }
}

/**
 * A fair waiter's process is SIGKILLed while it waits first in line; the holder releases a
 * moment later. The next live fair waiter must get the lock within the liveness window
 * (3 s) plus slack after the release, not after the dead waiter's (long) ttl.
 */
async function probeDeadFairWaiter(topologies, recorder) {
  const topology = topologies.find((t) => t.name === 'one')
  const url = topology.hosts[0].proxy.url
  const key = topology.keys[2]
  const deadTtl = 6000
  const options = { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS }
  const holderClient = new Redlock(url, options)
  const waiterClient = new Redlock(url, options)
  const child = fork(path.join(__dirname, 'fair-waiter.js'), [url, key, String(deadTtl)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let waiting = null
  try {
    const holder = await holderClient.acquire(key, { ttl: 5000 })
    await new Promise((resolve) => child.once('message', resolve))
    for (let i = 0; i < 100; i++) {
      const [state] = await holderClient.inspect(key)
      if (state.waiters.length > 0) break
      await sleep(20)
    }
    child.kill('SIGKILL')
    await exited
    waiting = waiterClient.acquire(key, { fair: true, ttl: 1000, waitTimeout: deadTtl + 5000 })
    await sleep(200) // the live waiter joins the queue behind the dead one
    const released = now()
    await holder.release()
    let outcome = 'taken'
    try {
      await (await waiting).release()
    } catch (error) {
      outcome = error.code
    }
    recorder.record('probe', { promise: 9, name: 'a live fair waiter behind a SIGKILLed one, after a release', topology: 'one', key, start: released, took: now() - released, bound: FAIR_LIVENESS_MS + FAIR_SLACK_MS, outcome, expected: 'taken' })
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await waiting?.catch(() => {})
    await holderClient.close()
    await waiterClient.close()
  }
}

/**
 * Redlock fences: hosts 0 and 1 count on while host 2 is cut off; then a lock is taken on
 * hosts 0 and 2, and host 2's link dies right after it answered, so the raise of its counter
 * fails; then a lock is taken on hosts 1 and 2. Its fence must still be above the previous one.
 */
async function probeFenceAfterFailedRaise(topologies, recorder) {
  // The steps depend on which request is the first on a fresh link; a try that could not set
  // the situation up is inconclusive and tried again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const probe = await fenceAfterFailedRaise(topologies)
    if (!probe.outcome.startsWith('inconclusive') || attempt === 2) {
      recorder.record('probe', { promise: 2, name: 'a Redlock fence after a failed raise on one host', topology: 'rl3', took: 0, bound: 0, expected: 'grew', attempt, ...probe })
      return
    }
  }
}

async function fenceAfterFailedRaise(topologies) {
  const topology = topologies.find((t) => t.name === 'rl3')
  const [first, second, third] = topology.hosts.map((h) => h.proxy)
  const key = topology.keys[2]
  const locks = new Redlock(topology.hosts.map((h) => h.proxy.url), { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS })
  const take = async () => {
    const lock = await locks.acquire(key, { ttl: 500, waitTimeout: 3000 })
    await lock.release().catch(() => {})
    return lock.fence
  }
  const fences = []
  let outcome
  try {
    fences.push(await take())
    third.stall('up')
    for (let i = 0; i < 3; i++) fences.push(await take())
    // A request swallowed on the way up leaves the client's connection waiting for a reply
    // that never comes; a reset makes it reconnect instead of waiting for the fault to be found.
    third.heal()
    third.reset()
    // Reconnect to host 2 now, so that the next request on its link is the lock itself.
    for (let i = 0; i < 10 && !(await locks.inspect(key).then(() => true, () => false)); i++) await sleep(100)
    second.stall('up')
    third.stallAfter(1, 'up')
    const beforeRaise = await take()
    fences.push(beforeRaise)
    second.heal()
    third.heal()
    second.reset()
    third.reset()
    await sleep(700) // the lock left behind on hosts whose release did not arrive expires
    first.stall('up')
    const after = await take()
    fences.push(after)
    outcome = after > beforeRaise ? 'grew' : 'did not grow'
  } catch (error) {
    outcome = `inconclusive (${error.code ?? error.message})`
  } finally {
    for (const proxy of [first, second, third]) proxy.heal()
    await locks.close()
  }
  return { key, outcome, fences }
}

/**
 * README: when a host stops answering, calls time out, "and work again when it answers again".
 * Requests swallowed on the way to the host (a one-way network fault) must not leave the
 * connection broken after the link heals.
 */
async function probeRecoveryAfterOneWayLoss(topologies, recorder) {
  const topology = topologies.find((t) => t.name === 'one')
  const proxy = topology.hosts[0].proxy
  const key = topology.keys[1]
  const locks = new Redlock(proxy.url, { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS })
  let outcome = 'still failing'
  const start = now()
  try {
    await locks.inspect(key)
    proxy.stall('up')
    await locks.lock(key, 1000).catch(() => null)
    proxy.heal()
    for (let i = 0; i < 5 && outcome !== 'recovered'; i++) {
      const token = await locks.lock(key, 1000).catch(() => undefined)
      if (token !== undefined) {
        outcome = 'recovered'
        if (token) await locks.unlock(key, token).catch(() => {})
      }
    }
  } finally {
    proxy.heal()
    await locks.close()
  }
  recorder.record('probe', { promise: 7, name: 'calls work again after requests were lost on the way to the host', topology: 'one', key, start, took: now() - start, bound: Infinity, outcome, expected: 'recovered' })
}

async function commandsProcessed(hosts) {
  let total = 0
  for (const host of hosts) total += Number(/total_commands_processed:(\d+)/.exec(await respOnce(host.port, ['INFO', 'stats']))[1])
  return total
}

/**
 * Two waiters (in two clients) for a Redlock key held on 2 of 3 hosts, the third free: they
 * must sleep until the lock is released or runs out, not poll.
 */
async function probeWaitersWithOneHostFree(topologies, recorder) {
  const topology = topologies.find((t) => t.name === 'rl3')
  const urls = topology.hosts.map((h) => h.proxy.url)
  const key = topology.keys[0]
  const options = { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS }
  const clients = [0, 1, 2].map(() => new Redlock(urls, options))
  const third = topology.hosts[2].proxy
  try {
    third.stall('up')
    const holder = await clients[0].acquire(key, { ttl: 5000 })
    third.heal()
    third.reset()
    const waits = [1, 2].map((i) => clients[i].acquire(key, { ttl: 1000, waitTimeout: 1500 }).catch(() => null))
    await sleep(200)
    const before = await commandsProcessed(topology.hosts)
    const start = now()
    await sleep(1000)
    const rate = ((await commandsProcessed(topology.hosts)) - before) / ((now() - start) / 1000)
    await holder.release().catch(() => {})
    for (const lock of await Promise.all(waits)) await lock?.release().catch(() => {})
    const perWaiter = Math.round(rate / 2)
    recorder.record('probe', { promise: 5, name: 'two waiters for a Redlock key held on 2 of 3 hosts', topology: 'rl3', key, took: perWaiter, bound: COMMANDS_PER_WAITER_PER_S, outcome: `${perWaiter} commands/s per waiter`, expected: 'within bound' })
  } finally {
    third.heal()
    for (const client of clients) await client.close()
  }
}

async function runProbes(topologies, recorder) {
  await probeWaitersWithOneHostFree(topologies, recorder)
  await probeRecoveryAfterOneWayLoss(topologies, recorder)
  await probeFenceAfterFailedRaise(topologies, recorder)
  await probeDeadFairWaiter(topologies, recorder)
  await probeBusyAnswer(topologies, recorder)
  await probeNoStarvation(topologies, recorder)
}

// Longest a waiter the fairness rule puts next may wait: the holders ahead of it let go after
// HOLD_MS, and a release reaches it in about one round trip.
const STREAM_HOLD_MS = 40
const NOT_STARVED_BOUND_MS = STREAM_HOLD_MS * 2 + CALL_SLACK_MS

/**
 * Waiters the fairness rule puts first are not starved by a stream of others: a writer behind
 * readers that overlap so that the lock is never free of them (writer-preferring: new readers
 * wait behind it), and a fair request for all of a semaphore's permits among fair callers of
 * one permit each (only the head of the queue is admitted). Each must get in within a couple of
 * holds, not at the end of its wait.
 */
async function probeNoStarvation(topologies, recorder) {
  const topology = topologies.find((t) => t.name === 'one')
  const url = topology.hosts[0].proxy.url
  const options = { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS }
  const streamClient = new Redlock(url, options)
  const waiterClient = new Redlock(url, options)
  const cases = [
    {
      name: 'a writer behind a stream of overlapping readers',
      key: topology.rwKeys[0],
      stream: () => streamClient.rwlock(topology.rwKeys[0]).read({ ttl: 2000, waitTimeout: 10000 }),
      waiter: () => waiterClient.rwlock(topology.rwKeys[0]).write({ ttl: 2000, waitTimeout: 5000 }),
    },
    {
      name: 'a fair request for every permit among fair callers of one',
      key: topology.semaphoreKeys[0],
      stream: () => streamClient.semaphore(topology.semaphoreKeys[0], { permits: 3 }).acquire({ fair: true, ttl: 2000, waitTimeout: 10000 }),
      waiter: () => waiterClient.semaphore(topology.semaphoreKeys[0], { permits: 3 }).acquire({ permits: 3, fair: true, ttl: 2000, waitTimeout: 5000 }),
    },
  ]
  try {
    for (const { name, key, stream, waiter } of cases) {
      let streaming = true
      // Three loops, started apart, so that some holder is always inside.
      const loops = [0, 1, 2].map(async (index) => {
        await sleep(index * (STREAM_HOLD_MS / 3))
        while (streaming) {
          const held = await stream().catch(() => null)
          await sleep(STREAM_HOLD_MS)
          await held?.release().catch(() => {})
        }
      })
      await sleep(300)
      const start = now()
      let outcome = 'taken'
      try {
        const held = await waiter()
        await held.release()
      } catch (error) {
        outcome = error.code
      }
      const took = now() - start
      streaming = false
      await Promise.all(loops)
      recorder.record('probe', { promise: 9, name, topology: 'one', key, start, took, bound: NOT_STARVED_BOUND_MS, outcome, expected: 'taken' })
    }
  } finally {
    await streamClient.close()
    await waiterClient.close()
  }
}

async function probeBusyAnswer(topologies, recorder) {
  const topology = topologies.find((t) => t.name === 'rl3')
  const options = { connectTimeout: CONNECT_TIMEOUT_MS, commandTimeout: COMMAND_TIMEOUT_MS }
  const holder = new Redlock(topology.hosts.map((h) => h.proxy.url), options)
  const contender = new Redlock(topology.hosts.map((h) => h.proxy.url), options)
  const [busyKey, freeKey] = topology.keys
  const stalled = topology.hosts[2]
  try {
    const held = await holder.lock(busyKey, 10000)
    await contender.lock(freeKey, 1).catch(() => null) // connect to every host first
    stalled.signal('SIGSTOP')
    const start = now()
    const busy = await timedLock(contender, busyKey, 1000)
    const free = await timedLock(contender, freeKey, 1000)
    stalled.signal('SIGCONT')
    recorder.record('probe', { promise: 7, name: 'a busy answer with one of 3 hosts stopped', topology: 'rl3', key: busyKey, start, took: busy.took, bound: DECIDED_ANSWER_BOUND_MS, outcome: busy.outcome, expected: 'busy', holder: held !== null })
    recorder.record('probe', { promise: 7, name: 'a free key with one of 3 hosts stopped', topology: 'rl3', key: freeKey, start, took: free.took, bound: DECIDED_ANSWER_BOUND_MS, outcome: free.outcome, expected: 'taken' })
    if (held) await holder.unlock(busyKey, held).catch(() => {})
    if (free.token) await contender.unlock(freeKey, free.token).catch(() => {})
  } finally {
    if (stalled.stopped) stalled.signal('SIGCONT')
    await holder.close()
    await contender.close()
  }
}

module.exports = { runProbes }
