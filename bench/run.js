'use strict'

// relock's benchmark beside the Node lock libraries users would otherwise pick, against
// throwaway redis-server processes that it starts on free loopback ports and kills at the end.
//
//   node bench/run.js [--quick] [--rounds N] [--only 1,2,4] [--memory-cycles N]
//
// Writes bench/results/latest.json (raw numbers) and bench/results/latest.md (tables), and
// prints the markdown. Progress goes to stderr.

const crypto = require('node:crypto')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const Redis = require('ioredis')
const { startDelayProxy } = require('./lib/delay-proxy')
const { startServers, stopAll: stopAllServers, version: redisServerVersion } = require('../tools/redis-server')
const { availableVariants, libraryVersions } = require('./lib/libraries')
const { progress } = require('./lib/rounds')
const { addComparisons, renderMarkdown } = require('./lib/report')
const { runThroughputTable } = require('./scenarios/throughput')
const { runContention } = require('./scenarios/contention')
const { runCeiling } = require('./scenarios/ceiling')
const { runMemory } = require('./scenarios/memory')
const { runPrimitives } = require('./scenarios/primitives')

const RESULTS_DIR = path.join(__dirname, 'results')
const ALL_SCENARIOS = [1, 2, 3, 4, 5, 6, 7, 8]

// Sized so that the full run stays under 10 minutes on a 2-core machine.
const FULL = {
  rounds: 3,
  singleHostDurationMs: 1500,
  redlockDurationMs: 1000,
  warmupMs: 200,
  contentionWorkers: 4,
  contentionIterations: 100,
  benchmarkRequests: 100000,
  memoryCycles: 1000000,
  memoryLoops: 64,
}

// A smoke test: every code path, in about a minute.
const QUICK = {
  ...FULL,
  rounds: 1,
  singleHostDurationMs: 300,
  redlockDurationMs: 300,
  warmupMs: 100,
  contentionIterations: 20,
  benchmarkRequests: 10000,
  memoryCycles: 50000,
}

const USAGE = 'usage: node bench/run.js [--quick] [--rounds N] [--only 1,2,4] [--memory-cycles N]'

function positiveInteger(flag, text) {
  const value = Number(text)
  if (!Number.isInteger(value) || value < 1) throw new Error(`${flag} needs a positive whole number, got ${text}\n${USAGE}`)
  return value
}

function parseFlags(argv) {
  const flags = { quick: false, rounds: null, only: ALL_SCENARIOS, memoryCycles: null }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    if (flag === '--quick') flags.quick = true
    else if (flag === '--rounds') flags.rounds = positiveInteger(flag, argv[++i])
    else if (flag === '--memory-cycles') flags.memoryCycles = positiveInteger(flag, argv[++i])
    else if (flag === '--only') {
      flags.only = String(argv[++i]).split(',').map((part) => positiveInteger(flag, part))
      const unknown = flags.only.filter((scenario) => !ALL_SCENARIOS.includes(scenario))
      if (unknown.length) throw new Error(`--only: no scenario ${unknown.join(', ')}; there are 1 to 8\n${USAGE}`)
    } else throw new Error(`unknown flag ${flag}\n${USAGE}`)
  }
  return flags
}

function settingsFor(flags) {
  const base = flags.quick ? QUICK : FULL
  const memoryCycles = flags.memoryCycles ?? base.memoryCycles
  return {
    ...base,
    rounds: flags.rounds ?? base.rounds,
    memoryCycles,
    // V8 grows its young generation (heapTotal, and so RSS) to its working size over the first
    // few hundred thousand cycles at 64 loops; growth is measured from there on.
    memoryWarmupCycles: Math.round(memoryCycles * 0.3),
  }
}

function machineInfo() {
  return {
    cpuModel: os.cpus()[0].model,
    cores: os.cpus().length,
    node: process.version,
    redisServer: redisServerVersion(),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg(),
  }
}

// The tree changes under active development and the version number does not: fingerprint the
// JavaScript layer and the native addon that were measured.
function relockBuild() {
  const root = path.join(__dirname, '..')
  const fingerprint = (file) => {
    const fullPath = path.join(root, file)
    return {
      file,
      sha256: crypto.createHash('sha256').update(fs.readFileSync(fullPath)).digest('hex').slice(0, 16),
      modified: fs.statSync(fullPath).mtime.toISOString(),
    }
  }
  const addons = fs.readdirSync(root).filter((file) => /^relock\..+\.node$/.test(file))
  return ['index.js', ...addons].map(fingerprint)
}

// Everything this process started is killed by PID when it ends, however it ends.
const runningWorkers = new Set()

function cleanUp() {
  for (const child of runningWorkers) child.kill('SIGKILL')
  stopAllServers()
}

function installCleanUp() {
  process.on('exit', cleanUp)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      progress(`${signal}: stopping the redis-servers and workers`)
      cleanUp()
      process.exit(130)
    })
  }
}

async function runScenarios(only, settings, hosts, variants) {
  const admins = hosts.map((host) => new Redis(host.url))
  const flushHosts = () => Promise.all(admins.map((admin) => admin.flushall()))
  const { rounds, warmupMs } = settings
  const results = {}
  try {
    const throughput = (id, title, hostCount, loops, durationMs) =>
      runThroughputTable({ id, title, hosts: hosts.slice(0, hostCount), loops, variants, rounds, durationMs, warmupMs, flushHosts })
    if (only.includes(1)) results.s1 = await throughput('s1', 'Sequential, 1 host', 1, 1, settings.singleHostDurationMs)
    if (only.includes(2)) results.s2 = await throughput('s2', '64 concurrent loops, 1 host', 1, 64, settings.singleHostDurationMs)
    if (only.includes(3)) {
      results.s3 = { tables: [] }
      for (const hostCount of [3, 5]) {
        results.s3.tables.push(await throughput(`s3-${hostCount}-seq`, `Sequential, ${hostCount} hosts`, hostCount, 1, settings.redlockDurationMs))
        results.s3.tables.push(await throughput(`s3-${hostCount}-conc`, `64 concurrent loops, ${hostCount} hosts`, hostCount, 64, settings.redlockDurationMs))
      }
    }
    if (only.includes(4)) {
      results.s4 = await runContention({ host: hosts[0], variants, rounds, workers: settings.contentionWorkers, iterations: settings.contentionIterations, runningWorkers })
    }
    if (only.includes(5)) {
      results.s5 = await runCeiling({ host: hosts[0], rounds, requests: settings.benchmarkRequests, durationMs: settings.singleHostDurationMs, warmupMs })
    }
    if (only.includes(7)) {
      results.s7 = { tables: [] }
      for (const delayMs of [0.25, 1]) {
        const proxy = await startDelayProxy(hosts[0], delayMs)
        try {
          const distant = [{ url: proxy.url, port: proxy.port }]
          const note = `Every chunk is held ${delayMs} ms in each direction by a proxy (bench/lib/delay-proxy.js).`
          for (const loops of [1, 64]) {
            const table = await runThroughputTable({ id: `s7-${delayMs}-${loops}`, title: `${delayMs} ms each way, ${loops === 1 ? '1 loop' : `${loops} loops`}`, hosts: distant, loops, variants, rounds, durationMs: settings.singleHostDurationMs, warmupMs, flushHosts, note })
            results.s7.tables.push(table)
          }
        } finally {
          proxy.stop()
        }
      }
    }
    if (only.includes(8)) {
      results.s8 = await runPrimitives({ host: hosts[0], rounds, durationMs: settings.singleHostDurationMs, warmupMs, flushHosts })
    }
    if (only.includes(6)) {
      results.s6 = await runMemory({ host: hosts[0], rounds, cycles: settings.memoryCycles, warmupCycles: settings.memoryWarmupCycles, loops: settings.memoryLoops, runningWorkers })
    }
  } finally {
    for (const admin of admins) admin.disconnect()
  }
  return results
}

function writeResults(results, markdown) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true })
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`)
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.md'), markdown)
  progress(`wrote ${path.relative(process.cwd(), path.join(RESULTS_DIR, 'latest.md'))} and latest.json`)
}

async function main() {
  const flags = parseFlags(process.argv.slice(2))
  const settings = settingsFor(flags)
  installCleanUp()
  const startedAt = new Date()
  const started = performance.now()
  const machine = machineInfo()
  const buildAtStart = relockBuild()
  const { available, unavailable } = availableVariants()
  for (const [library, reason] of Object.entries(unavailable)) progress(`skipping ${library}: ${reason}`)

  const hosts = await startServers(flags.only.includes(3) ? 5 : 1)
  progress(`redis-server ${machine.redisServer} on ports ${hosts.map((host) => host.port).join(', ')}`)
  const scenarios = await runScenarios(flags.only, settings, hosts, available)

  const results = {
    command: ['node bench/run.js', ...process.argv.slice(2)].join(' '),
    startedAt: startedAt.toISOString(),
    durationSeconds: (performance.now() - started) / 1000,
    settings,
    scenariosRun: flags.only,
    machine: { ...machine, loadAverageAtEnd: os.loadavg() },
    versions: libraryVersions(),
    relockBuild: buildAtStart,
    relockBuildChangedDuringRun: JSON.stringify(buildAtStart) !== JSON.stringify(relockBuild()),
    unavailable,
    ...scenarios,
  }
  addComparisons(results)
  const markdown = renderMarkdown(results)
  writeResults(results, markdown)
  process.stdout.write(markdown)
}

main().then(
  // A peer may leave timers or sockets open; the run is over, so end the process.
  () => process.exit(0),
  (error) => {
    progress(`failed: ${error.stack ?? error.message}`)
    process.exit(1)
  },
)
