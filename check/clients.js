'use strict'

// The client processes: forked at the start, SIGKILLed and replaced by the fault injector,
// stopped gracefully at the end. A process that dies on its own is recorded and replaced.

const { fork } = require('node:child_process')
const path = require('node:path')
const { now } = require('./clock')

class ClientPool {
  constructor({ count, threads, baseConfig, recorder }) {
    this.count = count
    this.threads = threads
    this.baseConfig = baseConfig
    this.recorder = recorder
    this.slots = Array.from({ length: count }, () => ({ child: null, generation: -1 }))
    this.stopping = false
  }

  async startAll() {
    await Promise.all(this.slots.map((_, proc) => this.#spawn(proc)))
  }

  #spawn(proc) {
    const slot = this.slots[proc]
    slot.generation++
    const config = { ...this.baseConfig, proc, generation: slot.generation, threads: this.threads }
    const child = fork(path.join(__dirname, 'client.js'), [JSON.stringify(config)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    slot.child = child
    const label = `p${proc}g${slot.generation}`
    child.exitedAt = null
    child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      child.exitedAt = now()
      if (!child.killedOnPurpose && !child.stoppedOnPurpose) {
        this.recorder.record('client-exit', { process: label, t: now(), code, signal })
        if (!this.stopping && slot.child === child) this.#spawn(proc)
      }
      resolve()
    }))
    return new Promise((resolve) => {
      child.once('message', resolve)
      child.once('exit', resolve)
    })
  }

  block(proc, thread, ms) {
    const { child } = this.slots[proc]
    if (!child || child.exitedAt !== null || child.killedOnPurpose) return false
    // A process can die before its exit is seen here: the send then fails, and that is all.
    child.send({ cmd: 'block', thread, ms }, () => {})
    return true
  }

  async kill(proc) {
    const slot = this.slots[proc]
    const child = slot.child
    // Killed already (by a fault still waiting for the exit): one kill, one replacement, or
    // the second replacement would leave the first running, unknown to the pool, for ever.
    if (!child || child.exitedAt !== null || child.killedOnPurpose) return false
    child.killedOnPurpose = true
    this.recorder.record('client-kill', { process: `p${proc}g${slot.generation}`, pid: child.pid, t: now() })
    child.kill('SIGKILL')
    await child.exited
    return true
  }

  async replace(proc) {
    if (this.stopping) return
    await this.#spawn(proc)
  }

  /** Asks every process to stop and close its clients; waits for them (SIGKILL after `graceMs`). */
  async stopAll(graceMs = 30000) {
    this.stopping = true
    await Promise.all(this.slots.map(async (slot) => {
      const { child } = slot
      if (!child || child.exitedAt !== null) return
      child.stoppedOnPurpose = true
      child.send({ cmd: 'stop' }, () => {})
      const timer = setTimeout(() => {
        this.recorder.record('client-exit', { process: `p${slot.child === child ? this.slots.indexOf(slot) : '?'}g${slot.generation}`, t: now(), code: null, signal: 'SIGKILL', reason: `did not stop within ${graceMs} ms` })
        child.kill('SIGKILL')
      }, graceMs)
      await child.exited
      clearTimeout(timer)
    }))
  }

  killAllNow() {
    for (const { child } of this.slots) {
      if (child && child.exitedAt === null) child.kill('SIGKILL')
    }
  }
}

module.exports = { ClientPool }
