'use strict'

// Throwaway redis-server processes on free loopback ports, for the tests, the safety checker,
// the benchmarks and the demo: stopped by PID, also when the process that started them exits
// on an error.

const { spawn, spawnSync, execFileSync } = require('node:child_process')
const net = require('node:net')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

function requireRedis() {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) {
    throw new Error('redis-server is not on PATH. Install Redis 6.2 or newer (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run the tests again.')
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const live = new Set()
process.on('exit', stopAll)

/** Kills every server this process started, at once (for exit and signal handlers). */
function stopAll() {
  for (const server of live) {
    try {
      process.kill(server.pid, 'SIGKILL')
    } catch {}
    fs.rmSync(server.dir, { recursive: true, force: true })
  }
  live.clear()
}

/** The version of the redis-server on PATH, such as 7.0.15. */
function version() {
  requireRedis()
  const banner = execFileSync('redis-server', ['--version'], { encoding: 'utf8' })
  return /v=(\S+)/.exec(banner)?.[1] ?? banner.trim()
}

class RedisServer {
  constructor(port, extraArgs) {
    this.port = port
    this.extraArgs = extraArgs
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-redis-'))
    this.process = null
    this.stopped = false // SIGSTOPped
    const passwordAt = extraArgs.indexOf('--requirepass')
    this.password = passwordAt >= 0 ? extraArgs[passwordAt + 1] : null
  }

  static async start(extraArgs = []) {
    requireRedis()
    // The free port can be taken by another process before redis-server binds it: try another.
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServer(await freePort(), extraArgs)
      try {
        return await server.restart()
      } catch (error) {
        await server.stop()
        if (attempt === 3) throw error
      }
    }
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  get pid() {
    return this.process && this.process.pid
  }

  get up() {
    return this.process !== null
  }

  async restart() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extraArgs]
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    child.unref()
    live.add(this)
    let exited = false
    this.exited = new Promise((resolve) => child.once('exit', () => {
      exited = true
      if (this.process === child) live.delete(this)
      resolve()
    }))
    this.process = child
    this.stopped = false
    for (let i = 0; i < 500 && !exited; i++) {
      if (this.ping()) return this
      await sleep(20)
    }
    throw new Error(`redis-server did not start on port ${this.port}${exited ? ': it exited' : ''}`)
  }

  // Up once it answers at all; a server whose default user is disabled answers NOAUTH.
  ping() {
    try {
      return /PONG|NOAUTH/.test(this.cli('PING'))
    } catch {
      return false
    }
  }

  cli(...args) {
    const auth = this.password ? ['--no-auth-warning', '-a', this.password] : []
    return execFileSync('redis-cli', ['-p', String(this.port), ...auth, ...args], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  }

  signal(name) {
    if (!this.process) return
    process.kill(this.pid, name)
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
    live.delete(this)
    this.process = null
    this.stopped = false
  }

  async stop() {
    if (this.stopped) this.signal('SIGCONT')
    await this.kill()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

async function startServers(count, extraArgs) {
  return Promise.all(Array.from({ length: count }, () => RedisServer.start(extraArgs)))
}

module.exports = { RedisServer, startServers, stopAll, version, freePort, sleep }
