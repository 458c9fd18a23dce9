'use strict'

// A TCP proxy that holds every chunk for a fixed delay in each direction, as a network between
// hosts would: it runs in a child process of its own (so that its work does not count as the
// client's CPU), and keeps sub-millisecond delays by polling the clock while chunks wait.
//
//   const proxy = await startDelayProxy({ port: 6379 }, 0.25)   // ms each way
//   proxy.url …; proxy.stop()

const { fork } = require('node:child_process')
const net = require('node:net')

function startDelayProxy(target, delayMs) {
  const child = fork(__filename, ['--serve', String(target.port), String(delayMs)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`the delay proxy exited with ${code}`)))
    child.once('message', ({ port }) => {
      child.removeAllListeners('exit')
      resolve({ url: `redis://127.0.0.1:${port}`, port, stop: () => child.kill('SIGKILL') })
    })
  })
}

// The proxy itself: chunks wait in one queue ordered by due time (equal delays keep the order).
function serve(targetPort, delayMs) {
  const delayNs = BigInt(Math.round(delayMs * 1e6))
  const queue = []
  let polling = false
  const poll = () => {
    const now = process.hrtime.bigint()
    while (queue.length > 0 && queue[0].due <= now) {
      const { socket, chunk } = queue.shift()
      if (!socket.destroyed) socket.write(chunk)
    }
    if (queue.length === 0) {
      polling = false
      return
    }
    const waitMs = Number(queue[0].due - now) / 1e6
    if (waitMs > 2) setTimeout(poll, Math.floor(waitMs - 1))
    else setImmediate(poll)
  }
  const later = (socket, chunk) => {
    queue.push({ due: process.hrtime.bigint() + delayNs, socket, chunk })
    if (!polling) {
      polling = true
      setImmediate(poll)
    }
  }
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1', noDelay: true })
    client.setNoDelay(true)
    client.on('data', (chunk) => later(upstream, chunk))
    upstream.on('data', (chunk) => later(client, chunk))
    const end = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', end)
    upstream.on('error', end)
  })
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
}

if (process.argv[2] === '--serve') serve(Number(process.argv[3]), Number(process.argv[4]))

module.exports = { startDelayProxy }
