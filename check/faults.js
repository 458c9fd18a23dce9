'use strict'

// The seeded fault schedule: a pure function of the seed and the run's shape, so that
// `--seed N` replays the same faults at the same offsets. Each fault lasts a bounded time, and
// two faults never act on the same target at once (a target is one redis-server, one proxy,
// or one client process), but any number of hosts may be faulted together: the locks must
// stay safe whatever happens, only fewer grants are expected then.

const { createRng, deriveSeed } = require('./rng')

const HOST_KINDS = ['sigstop', 'kill-restart', 'kill-restart-aof', 'client-kill-normal', 'client-kill-pubsub', 'client-pause-write', 'debug-sleep']
const PROXY_KINDS = ['proxy-delay', 'proxy-blackhole', 'proxy-reset']
const CLIENT_KINDS = ['client-block', 'client-sigkill']
const FAULT_KINDS = [...HOST_KINDS, ...PROXY_KINDS, ...CLIENT_KINDS]

const WEIGHTS = {
  'sigstop': 1, 'kill-restart': 1, 'kill-restart-aof': 1, 'client-kill-normal': 0.7, 'client-kill-pubsub': 0.7,
  'client-pause-write': 1, 'debug-sleep': 0.8, 'proxy-delay': 1.2, 'proxy-blackhole': 1.2, 'proxy-reset': 0.7,
  'client-block': 1, 'client-sigkill': 0.6,
}
// Blocked event loops last 1.5 × one of the ttls the clients use, so leases run out meanwhile.
const BLOCKED_LOOP_TTLS = [200, 500, 1000, 2000]
const DIRECTIONS = ['up', 'down', 'both']

/**
 * @param {object} shape
 * @param {number} shape.seed
 * @param {number} shape.durationMs   faults start and end within [warmupMs, durationMs − quietMs]
 * @param {{name: string, persistent: boolean[]}[]} shape.topologies
 * @param {number} shape.processes    client processes
 * @param {number} shape.threadsPerProcess  JavaScript environments per process (main + workers)
 */
function makeSchedule({ seed, durationMs, topologies, processes, threadsPerProcess, warmupMs = 1500, quietMs = 1000 }) {
  const rng = createRng(deriveSeed(seed, 'faults'))
  const busyUntil = new Map()
  const schedule = []
  const lastStart = durationMs - quietMs
  const hosts = topologies.flatMap(({ name, persistent }) => persistent.map((keeps, index) => ({ topology: name, host: index, persistent: keeps })))
  for (let at = warmupMs + rng.int(0, 500); at < lastStart; at += rng.int(350, 1400)) {
    const kind = rng.weighted(FAULT_KINDS.map((k) => [k, WEIGHTS[k]]))
    const fault = plan(kind, rng, hosts, processes, threadsPerProcess)
    if (!fault) continue
    fault.durationMs = Math.min(fault.durationMs, Math.max(0, lastStart - at))
    const free = (target) => (busyUntil.get(target) ?? 0) <= at
    if (!fault.targets.every(free)) continue
    for (const target of fault.targets) busyUntil.set(target, at + fault.durationMs + (fault.settleMs ?? 0))
    delete fault.settleMs
    schedule.push({ at, ...fault })
  }
  return schedule
}

function plan(kind, rng, hosts, processes, threadsPerProcess) {
  if (HOST_KINDS.includes(kind)) {
    // A restart keeps the data only on a host that persists it; pick the matching kind of host.
    const candidates = kind === 'kill-restart' ? hosts.filter((h) => !h.persistent) : kind === 'kill-restart-aof' ? hosts.filter((h) => h.persistent) : hosts
    if (candidates.length === 0) return null
    const { topology, host } = rng.pick(candidates)
    const base = { kind, topology, host, targets: [`host:${topology}/${host}`] }
    if (kind === 'sigstop') return { ...base, durationMs: rng.int(200, 2500) }
    if (kind === 'kill-restart' || kind === 'kill-restart-aof') return { ...base, durationMs: rng.int(100, 2000), settleMs: 300 }
    if (kind === 'client-pause-write') return { ...base, durationMs: rng.int(200, 2000) }
    if (kind === 'debug-sleep') return { ...base, durationMs: rng.int(2, 15) * 100 }
    return { ...base, durationMs: 0 } // CLIENT KILL: instant
  }
  if (PROXY_KINDS.includes(kind)) {
    const { topology, host } = rng.pick(hosts)
    const base = { kind, topology, host, targets: [`proxy:${topology}/${host}`] }
    if (kind === 'proxy-delay') return { ...base, direction: rng.pick(DIRECTIONS), delayMs: rng.int(20, 400), durationMs: rng.int(500, 3000) }
    if (kind === 'proxy-blackhole') return { ...base, direction: rng.pick(DIRECTIONS), durationMs: rng.int(300, 3000) }
    return { ...base, durationMs: 0 }
  }
  const proc = rng.int(0, processes - 1)
  if (kind === 'client-block') {
    const thread = rng.int(0, threadsPerProcess - 1)
    return { kind, proc, thread, durationMs: Math.round(rng.pick(BLOCKED_LOOP_TTLS) * 1.5), targets: [`proc:${proc}`] }
  }
  // The replacement process starts after `durationMs`; it needs a moment to get going.
  return { kind, proc, durationMs: rng.int(200, 1000), settleMs: 1500, targets: [`proc:${proc}`] }
}

module.exports = { makeSchedule, FAULT_KINDS, HOST_KINDS, PROXY_KINDS, CLIENT_KINDS }
