'use strict'

// npm run check -- [--seconds N | --minutes N] [--seed N] [--json FILE]
//
// Starts throwaway Redis hosts (one host, Redlock over 3, Redlock over 5, each host behind a
// fault-injecting proxy) and a fenced register, runs client processes against all three side
// by side while a seeded fault schedule disturbs them, then stops everything gracefully,
// checks what is left on the hosts, and verifies the recorded history.
// Exit code: 0 no violation, 1 violations, 2 bad usage.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Redlock } = require('..')
const { Recorder, readHistory } = require('./recorder')
const { Host, redisMajorVersion } = require('./hosts')
const { RespConnection, respOnce } = require('./resp')
const { TOPOLOGIES, startTopologies, describeTopologies, stopTopologies, checkAppKeys, isLockKey, APP_KEYS } = require('./topologies')
const { makeSchedule } = require('./faults')
const { FaultInjector, probeDebugSleep } = require('./inject')
const { ClientPool } = require('./clients')
const { verify } = require('./history')
const { summarize, print } = require('./report')
const { now, sleep } = require('./clock')
const { LONGEST_TTL_MS } = require('./bounds')
const { runProbes } = require('./probes')

const PROCESSES = 3
const THREADS_PER_PROCESS = 2
const ACTORS_PER_TOPOLOGY_PER_THREAD = 2

const USAGE = 'usage: node check/run.js [--seconds N | --minutes N] [--seed N] [--json FILE]'

function parseArgs(argv) {
  const options = { seconds: 60, seed: null, json: null }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = argv[i + 1]
    const number = Number(value)
    if ((flag === '--seconds' || flag === '--minutes') && Number.isFinite(number) && number > 0) {
      options.seconds = flag === '--minutes' ? number * 60 : number
      i++
    } else if (flag === '--seed' && Number.isInteger(number) && number >= 0 && number < 2 ** 32) {
      options.seed = number
      i++
    } else if (flag === '--json' && value && !value.startsWith('--')) {
      options.json = value
      i++
    } else {
      return { error: `bad argument ${JSON.stringify(flag)}${value !== undefined ? ` ${JSON.stringify(value)}` : ''}` }
    }
  }
  if (options.seed === null) options.seed = Math.floor(Math.random() * 2 ** 32)
  return options
}

async function sampleCommands(topologies, connections, recorder) {
  await Promise.all(topologies.flatMap(({ name, hosts }) => hosts.map(async (host, index) => {
    if (!host.up || host.stopped) return
    try {
      const info = await connections.get(host).call('INFO')
      const match = /total_commands_processed:(\d+)/.exec(info)
      // A restarted server counts from zero, and replaying its AOF while it loads counts as
      // commands processed: only samples of one server life, taken after loading, compare.
      const runId = /run_id:(\w+)/.exec(info)?.[1] ?? null
      const loading = /loading:1/.test(info)
      if (match) recorder.record('cmds', { topology: name, host: index, t: now(), total: Number(match[1]), runId, loading })
    } catch {}
  })))
}

async function recordFinalHolders(topologies, recorder, phase) {
  for (const { name, hosts, keys, rwKeys, semaphoreKeys, multiKeys } of topologies) {
    for (const [index, host] of hosts.entries()) {
      const record = (key, token, pttl, error) => recorder.record('final-holder', { topology: name, host: index, key, token, pttl, phase, t: now(), ...(error ? { error } : {}) })
      // Plain locks and write-locked read-write locks: the key's token.
      for (const key of [...keys, ...multiKeys, ...rwKeys]) {
        try {
          record(key, await respOnce(host.port, ['GET', key]), await respOnce(host.port, ['PTTL', key]))
        } catch (error) {
          record(key, null, undefined, error.message)
        }
      }
      // Readers and holders of permits: every token in the sorted set of leases, with its time
      // left (leases that ran out count as gone, as the next call reclaims them).
      // (`{x}` keeps its readers apart from those of `x`: their key ends in `:own`.)
      const readersOf = (key) => (key.startsWith('{') ? `${key}:relock:rw:readers:own` : `{${key}}:relock:rw:readers`)
      const leaseSets = [...rwKeys.map((key) => [key, readersOf(key)]), ...semaphoreKeys.map((key) => [key, key])]
      for (const [key, leases] of leaseSets) {
        try {
          const time = await respOnce(host.port, ['TIME'])
          const nowMs = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000)
          const entries = await respOnce(host.port, ['ZRANGE', leases, '0', '-1', 'WITHSCORES'])
          for (let i = 0; i < entries.length; i += 2) {
            const left = Number(entries[i + 1]) - nowMs
            if (left > 0) record(key, entries[i], left)
          }
        } catch (error) {
          record(key, null, undefined, error.message)
        }
      }
    }
  }
}

async function recordAppKeys(topologies, recorder, phase) {
  for (const { name, hosts } of topologies) {
    for (const [index, host] of hosts.entries()) recorder.record('app-final', { topology: name, host: index, phase, problems: await checkAppKeys(host.port) })
  }
}

/** The operator calls once more, by the orchestrator, on quiet hosts. */
async function operatorCallsAtTheEnd(topologies, recorder) {
  for (const { name, hosts } of topologies) {
    const locks = new Redlock(hosts.map((h) => h.url), { connectTimeout: 300, commandTimeout: 300 })
    try {
      for (const { key } of APP_KEYS) {
        const start = now()
        let forced = null
        let code = null
        try {
          forced = await locks.forceRelease(key)
        } catch (error) {
          code = error.code
        }
        recorder.record('call', { op: 'forceRelease', topology: name, key, start, end: now(), ok: code === null, value: forced, code: code ?? undefined })
        const problems = []
        for (const [index, host] of hosts.entries()) {
          const app = APP_KEYS.find((entry) => entry.key === key)
          const value = await respOnce(host.port, app.read).catch((error) => `error: ${error.message}`)
          if (value !== app.expect) problems.push({ host: index, found: value })
        }
        recorder.record('operator-check', { topology: name, key, t: now(), forced, code, problems })
      }
      const start = now()
      try {
        const listed = await locks.list('*')
        recorder.record('call', { op: 'list', topology: name, start, end: now(), ok: true, value: listed.length })
        recorder.record('listed', { topology: name, t: now(), nonLockKeys: listed.filter((key) => !isLockKey(key)) })
      } catch (error) {
        recorder.record('call', { op: 'list', topology: name, start, end: now(), ok: false, code: error.code, message: error.message })
      }
    } finally {
      await locks.close()
    }
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2))
  if (options.error) {
    console.error(`${options.error}\n${USAGE}`)
    return 2
  }
  const { seconds, seed } = options
  console.log(`relock check: seed ${seed}, ${seconds} s (reproduce: npm run check -- --seed ${seed} --seconds ${seconds})`)
  const historyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-check-history-'))
  const recorder = new Recorder(path.join(historyDir, 'orchestrator.jsonl'), 'orchestrator')
  const debugCommand = redisMajorVersion() >= 7
  const registerHost = await Host.start({ persistent: false, debugCommand: false, name: 'register' })
  const topologies = await startTopologies(debugCommand)
  let clients = null
  let sampler = null
  const stopOnSignal = () => {
    clients?.killAllNow()
    process.exit(130) // the exit handler of hosts.js kills every redis-server by PID
  }
  process.once('SIGINT', stopOnSignal)
  process.once('SIGTERM', stopOnSignal)
  try {
    const debugSleepSupported = await probeDebugSleep(topologies[0].hosts[0].port)
    const durationMs = Math.round(seconds * 1000)
    clients = new ClientPool({
      count: PROCESSES, threads: THREADS_PER_PROCESS, recorder,
      baseConfig: { seed, historyDir, registerPort: registerHost.port, topologies: describeTopologies(topologies) },
    })
    const t0 = now()
    recorder.record('run-start', {
      t0, seed, seconds, debugSleepSupported,
      hostsPerTopology: Object.fromEntries(TOPOLOGIES.map((t) => [t.name, t.persistent.length])),
      actorsPerTopology: PROCESSES * THREADS_PER_PROCESS * ACTORS_PER_TOPOLOGY_PER_THREAD,
    })
    await runProbes(topologies, recorder)
    await clients.startAll()
    const schedule = makeSchedule({ seed, durationMs, topologies: TOPOLOGIES, processes: PROCESSES, threadsPerProcess: THREADS_PER_PROCESS })
    const injector = new FaultInjector({ topologies, clients, recorder, debugSleepSupported })
    const faultTimers = schedule.map((fault) => setTimeout(() => injector.inject(fault), Math.max(0, t0 + fault.at - now())))
    const sampleConnections = new Map(topologies.flatMap((t) => t.hosts).map((host) => [host, new RespConnection(host.port, { timeoutMs: 300 })]))
    sampler = setInterval(() => sampleCommands(topologies, sampleConnections, recorder), 1000)
    await sleep(Math.max(0, t0 + durationMs - now()))

    for (const timer of faultTimers) clearTimeout(timer)
    await injector.settle()
    recorder.record('faults-over', { t: now() })
    await clients.stopAll()
    clearInterval(sampler)
    for (const connection of sampleConnections.values()) connection.close()
    recorder.record('all-closed', { t: now() })
    await recordFinalHolders(topologies, recorder, 'immediate')
    await sleep(LONGEST_TTL_MS + 500)
    await recordFinalHolders(topologies, recorder, 'late')
    await recordAppKeys(topologies, recorder, 'end')
    await operatorCallsAtTheEnd(topologies, recorder)
    await recordAppKeys(topologies, recorder, 'after-operator')
    recorder.close()

    const records = readHistory(historyDir)
    const result = verify(records)
    const summary = summarize(records, result, { seed, seconds })
    console.log(print(summary, result, { historyDir }))
    if (options.json) fs.writeFileSync(options.json, JSON.stringify({ ...summary, violationList: result.violations, excusedList: result.excused }, null, 2))
    // The history stays on disk for a run with violations, to look at; a clean one is removed.
    if (summary.violations === 0) fs.rmSync(historyDir, { recursive: true, force: true })
    return summary.violations === 0 ? 0 : 1
  } finally {
    clearInterval(sampler)
    clients?.killAllNow()
    await stopTopologies(topologies)
    await registerHost.stop()
  }
}

main().then((code) => process.exit(code), (error) => {
  console.error(error)
  process.exit(3)
})
