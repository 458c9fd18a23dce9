'use strict'

// Scenarios 1–3: lock + unlock cycles on fresh keys (a new key every cycle, so nobody ever
// waits), by one loop or by many concurrent loops in this process, on one or several hosts.

const { percentileOfSorted, sortedCopy } = require('../lib/stats')
const { rowName } = require('../lib/libraries')
const { runRounds } = require('../lib/rounds')

// Runs lock + unlock cycles until `until`, each on a key of its own; records each cycle's
// latency in ms. Stops early once another loop of the same measurement has failed.
async function cycleLoop(locker, nextKey, until, latencies, state) {
  while (performance.now() < until && !state.error) {
    const key = nextKey()
    const start = performance.now()
    try {
      const ticket = await locker.lock(key)
      await locker.unlock(key, ticket)
    } catch (error) {
      state.error ??= error
      return
    }
    latencies.push(performance.now() - start)
  }
}

async function runLoops(locker, { loops, durationMs, keyPrefix }) {
  let sequence = 0
  const nextKey = () => `${keyPrefix}:${sequence++}`
  const latencies = []
  const state = { error: null }
  const start = performance.now()
  const until = start + durationMs
  await Promise.all(Array.from({ length: loops }, () => cycleLoop(locker, nextKey, until, latencies, state)))
  if (state.error) throw state.error
  return { latencies, elapsedMs: performance.now() - start }
}

// One measurement of one variant: a fresh client, a warm-up (connections, scripts, JIT), then
// the timed cycles. The hosts are flushed afterwards, so that keys a library leaves behind do
// not weigh on the next one.
async function measureVariant(variant, { hosts, loops, durationMs, warmupMs, flushHosts, keyPrefix }) {
  const locker = await variant.create({ urls: hosts.map((host) => host.url) })
  try {
    await runLoops(locker, { loops, durationMs: warmupMs, keyPrefix: `${keyPrefix}:warmup` })
    // CPU of this whole process (every thread: relock's native runtime counts too).
    const cpuBefore = process.cpuUsage()
    const { latencies, elapsedMs } = await runLoops(locker, { loops, durationMs, keyPrefix })
    const cpu = process.cpuUsage(cpuBefore)
    const sorted = sortedCopy(latencies)
    return {
      cycles: sorted.length,
      cyclesPerSecond: (sorted.length / elapsedMs) * 1000,
      cpuUsPerCycle: (cpu.user + cpu.system) / sorted.length,
      p50Us: percentileOfSorted(sorted, 0.5) * 1000,
      p99Us: percentileOfSorted(sorted, 0.99) * 1000,
    }
  } finally {
    await locker.close()
    await flushHosts()
  }
}

// One table: every variant that fits the host count, over `rounds` rounds.
async function runThroughputTable({ id, title, hosts, loops, variants, rounds, durationMs, warmupMs, flushHosts, note }) {
  const contenders = variants
    .filter((variant) => variant.throughput && (hosts.length === 1 || variant.multiHost))
    .map((variant) => ({ name: rowName(variant, hosts.length), isRelock: variant.isRelock, variant }))
  let measurement = 0
  const rows = await runRounds({
    label: title,
    contenders,
    rounds,
    measure: (contender) => measureVariant(contender.variant, { hosts, loops, durationMs, warmupMs, flushHosts, keyPrefix: `bench:${id}:${measurement++}` }),
  })
  return { id, title, hosts: hosts.length, loops, durationMs, rows, note }
}

module.exports = { runThroughputTable }
