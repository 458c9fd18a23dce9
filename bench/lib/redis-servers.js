'use strict'

// Throwaway redis-server processes on free loopback ports. Every server started here is killed
// by PID with SIGKILL when the benchmark ends, also on an error or Ctrl-C.

const { spawn, execFileSync } = require('node:child_process')
const net = require('node:net')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const running = new Set()

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function answersPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.setTimeout(500, () => socket.destroy())
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (data) => {
      socket.destroy()
      resolve(data.toString().startsWith('+PONG'))
    })
    socket.once('error', () => resolve(false))
    socket.once('close', () => resolve(false))
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function startServerOnce() {
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relock-bench-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' })
  const server = { port, url: `redis://127.0.0.1:${port}`, pid: child.pid, dir }
  running.add(server)
  let failure = null
  child.once('error', (error) => { failure = error })
  child.once('exit', () => { failure ??= new Error(`redis-server on port ${port} exited`) })
  for (let attempt = 0; attempt < 250 && !failure; attempt++) {
    if (await answersPing(port)) return server
    await sleep(20)
  }
  stopServer(server)
  throw new Error(`redis-server did not start on port ${port}: ${failure ? failure.message : 'no answer to PING'}`)
}

// The free port can be taken by someone else before redis-server binds it: try another.
async function startServer() {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServerOnce()
    } catch (error) {
      if (attempt === 3) throw error
    }
  }
}

function stopServer(server) {
  try {
    process.kill(server.pid, 'SIGKILL')
  } catch {}
  fs.rmSync(server.dir, { recursive: true, force: true })
  running.delete(server)
}

function startServers(count) {
  return Promise.all(Array.from({ length: count }, startServer))
}

function stopAllServers() {
  for (const server of [...running]) stopServer(server)
}

function redisServerVersion() {
  const banner = execFileSync('redis-server', ['--version'], { encoding: 'utf8' })
  return /v=(\S+)/.exec(banner)?.[1] ?? banner.trim()
}

module.exports = { startServers, stopAllServers, redisServerVersion }
