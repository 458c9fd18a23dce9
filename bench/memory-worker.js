'use strict'

// Scenario 6, in a process of its own (forked with --expose-gc by scenarios/memory.js, so that
// no other library's garbage is counted): relock lock/unlock cycles by concurrent loops on fresh
// keys, with RSS and V8 heapUsed sampled after a warm-up and then every tenth of the cycles.

const { Redlock } = require('..')

const SAMPLES = 10
const MB = 1024 * 1024

function sampleMemory(cycles) {
  global.gc?.() // sample live memory, not garbage that has yet to be collected
  const { rss, heapUsed, heapTotal } = process.memoryUsage()
  return { cycles, rssMB: rss / MB, heapUsedMB: heapUsed / MB, heapTotalMB: heapTotal / MB }
}

// Runs exactly `cycles` lock + unlock cycles spread over `loops` concurrent loops.
async function runCycles(locks, { cycles, loops, keyPrefix }) {
  let next = 0
  const loop = async () => {
    while (next < cycles) {
      const key = `${keyPrefix}:${next++}`
      const token = await locks.lock(key, 5000)
      if (token === null) throw new Error(`${key} was already held`)
      await locks.unlock(key, token)
    }
  }
  await Promise.all(Array.from({ length: loops }, loop))
}

async function main({ url, cycles, warmupCycles, loops }) {
  const locks = new Redlock(url)
  await runCycles(locks, { cycles: warmupCycles, loops, keyPrefix: 'bench:s6:warmup' })
  const samples = [sampleMemory(0)]
  const perSample = Math.ceil(cycles / SAMPLES)
  let busyMs = 0 // the cycles' own time, without the sampling and its garbage collections
  for (let done = 0; done < cycles; done += perSample) {
    const chunk = Math.min(perSample, cycles - done)
    const chunkStart = performance.now()
    await runCycles(locks, { cycles: chunk, loops, keyPrefix: `bench:s6:${done}` })
    busyMs += performance.now() - chunkStart
    samples.push(sampleMemory(done + chunk))
  }
  await locks.close()
  return { samples, gcExposed: typeof global.gc === 'function', cyclesPerSecond: (cycles / busyMs) * 1000 }
}

process.once('message', (setup) => {
  main(setup).then(
    (result) => process.send({ type: 'done', ...result }, () => process.exit(0)),
    (error) => process.send({ type: 'failed', error: error.message }, () => process.exit(1)),
  )
})
