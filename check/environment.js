'use strict'

// One JavaScript environment of a client process (its main thread or a worker thread): a
// Redlock client per topology, a few actors per topology running scenarios in a loop, a
// monitor of its own event loop's lag, and the handling of the injector's commands (block the
// event loop; stop and close gracefully).

const path = require('node:path')
const { Redlock } = require('..')
const { Recorder } = require('./recorder')
const { Register } = require('./register')
const { RespConnection } = require('./resp')
const { Holding } = require('./holding')
const { runScenario, scenarioWeights } = require('./scenarios')
const { createRng, deriveSeed } = require('./rng')
const { now, sleep } = require('./clock')

const CLIENT_OPTIONS = { connectTimeout: 300, commandTimeout: 300 }
const ACTORS_PER_TOPOLOGY = 2
const LAG_TICK_MS = 10
const LAG_WORTH_RECORDING_MS = 15

function startEnvironment(config) {
  const who = `p${config.proc}g${config.generation}t${config.thread}`
  const recorder = new Recorder(path.join(config.historyDir, `${who}.jsonl`), who)
  const register = new Register(config.registerPort)
  const rng = createRng(deriveSeed(config.seed, who))
  const holding = new Holding({ recorder, register, rng })
  const stopController = new AbortController()
  let stopping = false
  recorder.record('env-start', { t: now(), pid: process.pid, proc: config.proc, generation: config.generation, thread: config.thread })

  const contexts = config.topologies.map((topology) => {
    const client = new Redlock(topology.urls, CLIENT_OPTIONS)
    client.on('lost', ({ key, fence, error }) => recorder.record('lost', { via: 'event', topology: topology.name, key, fence, t: now(), code: error && error.code }))
    return {
      topology, client, recorder, holding, rng: createRng(deriveSeed(config.seed, `${who}/${topology.name}`)),
      probes: topology.ports.map((port) => new RespConnection(port, { timeoutMs: 300 })),
      stopSignal: stopController.signal, stopping: () => stopping,
    }
  })

  // The event loop's own lag: a check that overran because this loop was busy is not the
  // library's fault, and the history needs to know when that happened.
  let expected = now() + LAG_TICK_MS
  const lagTimer = setInterval(() => {
    const t = now()
    if (t - expected > LAG_WORTH_RECORDING_MS) recorder.record('lag', { start: expected, end: t })
    expected = t + LAG_TICK_MS
  }, LAG_TICK_MS)

  const actors = contexts.flatMap((ctx) => Array.from({ length: ACTORS_PER_TOPOLOGY }, async () => {
    const weights = scenarioWeights(ctx.topology.name)
    await sleep(ctx.rng.int(0, 200))
    while (!stopping) {
      const name = ctx.rng.weighted(weights)
      try {
        await runScenario(ctx, name)
      } catch (error) {
        recorder.record('scenario-error', { t: now(), scenario: name, message: String(error && error.stack).slice(0, 500) })
      }
      await sleep(ctx.rng.int(0, 20))
    }
  }))

  /** Blocks this event loop synchronously, as a long GC pause or a CPU-bound task would. */
  function block(ms) {
    const start = now()
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
    recorder.record('block', { start, end: now() })
    expected = now() + LAG_TICK_MS // the block is recorded as such, not as lag
  }

  /** Ends the actors' loops (waits are aborted), then closes every client gracefully. */
  async function stop() {
    stopping = true
    stopController.abort()
    await Promise.all(actors)
    for (const ctx of contexts) {
      const start = now()
      try {
        await ctx.client.close()
        recorder.record('call', { op: 'close', topology: ctx.topology.name, start, end: now(), ok: true })
      } catch (error) {
        recorder.record('call', { op: 'close', topology: ctx.topology.name, start, end: now(), ok: false, code: error.code ?? 'NON_RELOCK' })
      }
      for (const probe of ctx.probes) probe.close()
    }
    clearInterval(lagTimer)
    register.close()
    recorder.record('closed', { t: now() })
    recorder.close()
  }

  return { block, stop }
}

module.exports = { startEnvironment, CLIENT_OPTIONS }
