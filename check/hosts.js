'use strict'

// The redis-server processes of a run: started on free loopback ports, restarted in place by
// the fault injector, and always stopped by PID (also when the run dies on an error or Ctrl-C).

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { freePort } = require('../__test__/helpers/redis')
const { respOnce } = require('./resp')
const { sleep } = require('./clock')

const livePids = new Set()
process.on('exit', () => {
  for (const pid of livePids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
})

/** Major version of the redis-server on PATH (DEBUG needs an explicit switch from 7 on). */
function redisMajorVersion() {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) throw new Error('redis-server is not on PATH')
  const match = /v=(\d+)\./.exec(probe.stdout)
  return match ? Number(match[1]) : 0
}

class Host {
  constructor(port, { persistent, debugCommand, name }) {
    this.port = port
    this.name = name
    this.persistent = persistent
    this.debugCommand = debugCommand
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-check-redis-'))
    this.process = null
    this.stopped = false // SIGSTOPped
  }

  static async start(options) {
    const host = new Host(await freePort(), options)
    await host.restart()
    return host
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  get up() {
    return this.process !== null
  }

  async restart() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--dir', this.dir]
    args.push(...(this.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']))
    if (this.debugCommand) args.push('--enable-debug-command', 'yes')
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    child.unref()
    livePids.add(child.pid)
    this.exited = new Promise((resolve) => child.once('exit', () => {
      livePids.delete(child.pid)
      resolve()
    }))
    this.process = child
    this.stopped = false
    for (let i = 0; i < 250; i++) {
      if (await this.ping()) return this
      await sleep(20)
    }
    throw new Error(`redis-server did not start on port ${this.port}`)
  }

  async ping() {
    try {
      return (await respOnce(this.port, ['PING'], 500)) === 'PONG'
    } catch {
      return false
    }
  }

  signal(name) {
    if (!this.process) return
    process.kill(this.process.pid, name)
    this.stopped = name === 'SIGSTOP'
  }

  async kill() {
    if (!this.process) return
    const exited = this.exited
    this.process.ref() // keep the event loop alive until the exit is seen
    try {
      process.kill(this.process.pid, 'SIGKILL')
    } catch {}
    await exited
    this.process = null
    this.stopped = false
  }

  async stop() {
    if (this.stopped) this.signal('SIGCONT')
    await this.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

module.exports = { Host, redisMajorVersion }
