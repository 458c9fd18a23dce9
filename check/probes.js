'use strict'

// Short deterministic situations, run by the orchestrator on quiet hosts before the clients
// start, for promises that random faults rarely set up cleanly. Each probe records what it
// measured; history.js judges it.
//
// Redlock answers "as soon as the outcome is decided: a slow or dead host never delays it"
// (README). With one of 3 hosts stopped (SIGSTOP), the other two decide every lock call alone:
// a key both of them hold is busy, a key neither holds is taken.

const { Redlock } = require('..')
const { now } = require('./clock')
const { CONNECT_TIMEOUT_MS, COMMAND_TIMEOUT_MS, CALL_SLACK_MS } = require('./bounds')

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

async function runProbes(topologies, recorder) {
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
    recorder.record('probe', { name: 'a busy answer with one of 3 hosts stopped', topology: 'rl3', key: busyKey, start, took: busy.took, bound: DECIDED_ANSWER_BOUND_MS, outcome: busy.outcome, expected: 'busy', holder: held !== null })
    recorder.record('probe', { name: 'a free key with one of 3 hosts stopped', topology: 'rl3', key: freeKey, start, took: free.took, bound: DECIDED_ANSWER_BOUND_MS, outcome: free.outcome, expected: 'taken' })
    if (held) await holder.unlock(busyKey, held).catch(() => {})
    if (free.token) await contender.unlock(freeKey, free.token).catch(() => {})
  } finally {
    if (stalled.stopped) stalled.signal('SIGCONT')
    await holder.close()
    await contender.close()
  }
}

module.exports = { runProbes }
