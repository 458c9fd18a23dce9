'use strict'

// Scenario 6: does relock's memory stay flat over many cycles? Runs memory-worker.js in a fresh
// Node process with --expose-gc and reports how RSS and heapUsed grew after the warm-up.

const { fork } = require('node:child_process')
const path = require('node:path')
const { runRounds } = require('../lib/rounds')

const WORKER_SCRIPT = path.join(__dirname, '..', 'memory-worker.js')

function runMemoryWorker(setup, runningWorkers) {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER_SCRIPT, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    runningWorkers.add(child)
    child.once('message', (message) => {
      if (message.type === 'done') resolve(message)
      else reject(new Error(`memory worker failed: ${message.error}`))
    })
    child.once('exit', (code) => {
      runningWorkers.delete(child)
      reject(new Error(`memory worker exited with code ${code}`))
    })
    child.send(setup)
  })
}

function analyzeSamples({ samples, cyclesPerSecond, gcExposed }) {
  const afterWarmup = samples[0]
  const last = samples[samples.length - 1]
  return {
    cyclesPerSecond,
    rssAfterWarmupMB: afterWarmup.rssMB,
    rssGrowthMB: last.rssMB - afterWarmup.rssMB,
    rssPeakGrowthMB: Math.max(...samples.map((sample) => sample.rssMB)) - afterWarmup.rssMB,
    // From the first tenth on: the allocator and V8 settle into their working set during it,
    // so what grows after it is what keeps growing.
    rssGrowthAfterFirstTenthMB: last.rssMB - samples[1].rssMB,
    heapAfterWarmupMB: afterWarmup.heapUsedMB,
    heapGrowthMB: last.heapUsedMB - afterWarmup.heapUsedMB,
    gcExposed,
    samples,
  }
}

async function runMemory({ host, rounds, cycles, warmupCycles, loops, runningWorkers }) {
  const contender = { name: 'relock lock/unlock', isRelock: true }
  const rows = await runRounds({
    label: `scenario 6 (memory, ${cycles.toLocaleString('en-US')} cycles)`,
    contenders: [contender],
    rounds,
    measure: async () => analyzeSamples(await runMemoryWorker({ url: host.url, cycles, warmupCycles, loops }, runningWorkers)),
  })
  return { id: 's6', title: `Memory: relock over ${cycles.toLocaleString('en-US')} lock/unlock cycles, ${loops} concurrent loops`, cycles, warmupCycles, loops, rows }
}

module.exports = { runMemory }
