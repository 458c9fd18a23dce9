'use strict'

// Carries out the fault schedule on the live hosts, proxies and client processes, and records
// each fault with the moments it really started and ended.

const { now, sleep } = require('./clock')
const { respOnce } = require('./resp')
const { writeAppKeys } = require('./topologies')

class FaultInjector {
  constructor({ topologies, clients, recorder, debugSleepSupported }) {
    this.topologies = topologies
    this.clients = clients
    this.recorder = recorder
    this.debugSleepSupported = debugSleepSupported
    this.inFlight = new Set()
    this.counts = {}
  }

  #host(fault) {
    return this.topologies.find((t) => t.name === fault.topology).hosts[fault.host]
  }

  #count(kind, outcome) {
    this.counts[kind] ??= { started: 0, skipped: 0 }
    this.counts[kind][outcome]++
  }

  /** Starts one fault; it ends by itself after its duration. */
  inject(fault) {
    const running = this.#run(fault).finally(() => this.inFlight.delete(running))
    this.inFlight.add(running)
  }

  async #run(fault) {
    const { kind, durationMs } = fault
    const where = { topology: fault.topology, host: fault.host, proc: fault.proc, thread: fault.thread, direction: fault.direction, delayMs: fault.delayMs, durationMs }
    if (kind === 'debug-sleep' && !this.debugSleepSupported) {
      this.#count(kind, 'skipped')
      this.recorder.record('fault', { kind, ...where, start: now(), end: now(), skipped: 'DEBUG is not enabled on this redis-server' })
      return
    }
    const start = now()
    let detail
    try {
      detail = await this.#apply(fault)
    } catch (error) {
      detail = `failed: ${error.message}`
    }
    const skipped = detail === false ? 'target not available' : undefined
    this.#count(kind, skipped ? 'skipped' : 'started')
    this.recorder.record('fault', { kind, ...where, start, end: now(), skipped, detail: typeof detail === 'string' ? detail : undefined })
  }

  async #apply(fault) {
    const { kind, durationMs } = fault
    switch (kind) {
      case 'sigstop': {
        const host = this.#host(fault)
        if (!host.up) return false
        host.signal('SIGSTOP')
        await sleep(durationMs)
        host.signal('SIGCONT')
        return undefined
      }
      case 'kill-restart':
      case 'kill-restart-aof': {
        const host = this.#host(fault)
        if (!host.up) return false
        await host.kill()
        await sleep(durationMs)
        await host.restart()
        // The application keys are gone with the data of a host without persistence.
        if (!host.persistent) await writeAppKeys(host.port)
        return undefined
      }
      case 'client-kill-normal':
      case 'client-kill-pubsub': {
        const killed = await respOnce(this.#host(fault).port, ['CLIENT', 'KILL', 'TYPE', kind === 'client-kill-normal' ? 'normal' : 'pubsub'], 1000)
        return `${killed} connection(s) killed`
      }
      case 'client-pause-write':
        await respOnce(this.#host(fault).port, ['CLIENT', 'PAUSE', durationMs, 'WRITE'], 1000)
        await sleep(durationMs)
        return undefined
      case 'debug-sleep':
        await respOnce(this.#host(fault).port, ['DEBUG', 'SLEEP', (durationMs / 1000).toFixed(1)], durationMs + 2000)
        return undefined
      case 'proxy-delay':
        this.#host(fault).proxy.delay(fault.delayMs, fault.direction)
        await sleep(durationMs)
        this.#host(fault).proxy.heal()
        return undefined
      case 'proxy-blackhole':
        // Bytes swallowed while the connection stays open is something TCP never does: a dead
        // link delays bytes or ends the connection. So the link comes back as a reset, and the
        // one-way loss itself is left to its own probe (probes.js).
        this.#host(fault).proxy.stall(fault.direction)
        await sleep(durationMs)
        this.#host(fault).proxy.heal()
        this.#host(fault).proxy.reset()
        return undefined
      case 'proxy-reset':
        this.#host(fault).proxy.reset()
        return undefined
      case 'client-block':
        if (!this.clients.block(fault.proc, fault.thread, durationMs)) return false
        await sleep(durationMs)
        return undefined
      case 'client-sigkill':
        if (!(await this.clients.kill(fault.proc))) return false
        await sleep(durationMs)
        await this.clients.replace(fault.proc)
        return undefined
      default:
        throw new Error(`unknown fault kind ${kind}`)
    }
  }

  /** Waits for the running faults to end (every one is bounded), then heals what is left. */
  async settle() {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight])
    for (const { hosts } of this.topologies) {
      for (const host of hosts) {
        host.proxy.heal()
        if (host.stopped) host.signal('SIGCONT')
        if (!host.up) await host.restart()
      }
    }
  }
}

/** Whether DEBUG SLEEP works on this server (Redis 7 refuses it without enable-debug-command). */
async function probeDebugSleep(port) {
  try {
    await respOnce(port, ['DEBUG', 'SLEEP', '0'], 1000)
    return true
  } catch {
    return false
  }
}

module.exports = { FaultInjector, probeDebugSleep }
