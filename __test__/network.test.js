'use strict'

// Behaviour at network distance, through a proxy that delays every chunk: a call costs one
// round trip, also while others are in flight on the same connection.

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { spawnSync } = require('node:child_process')

const { Redlock } = require('..')
const { RedisServer } = require('../tools/redis-server')
const { Proxy } = require('./helpers/proxy')

const ONE_WAY_MS = 15

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function timedCycles(locks, loop, cycles) {
  const latencies = []
  for (let i = 0; i < cycles; i++) {
    const started = performance.now()
    const token = await locks.lock(`distance:${loop}`, 5000)
    latencies.push(performance.now() - started)
    assert.ok(token)
    const unlockStarted = performance.now()
    assert.equal(await locks.unlock(`distance:${loop}`, token), true)
    latencies.push(performance.now() - unlockStarted)
  }
  return latencies
}

test('with calls in flight side by side, each still takes one round trip (no Nagle delay)', async () => {
  const server = await RedisServer.start()
  const proxy = await Proxy.start(server.port)
  const locks = new Redlock(proxy.url, { connectTimeout: 2000, commandTimeout: 2000 })
  try {
    await locks.lock('distance:warm-up', 1000) // connect before the delay starts
    proxy.delay(ONE_WAY_MS)
    const roundTrip = 2 * ONE_WAY_MS
    const alone = median(await timedCycles(locks, 'alone', 6))
    const together = (await Promise.all([0, 1, 2, 3].map((loop) => timedCycles(locks, loop, 6)))).flat()
    const sideBySide = median(together)
    // One round trip is 2 × ONE_WAY_MS plus scheduling; a second round trip would add another.
    assert.ok(alone < roundTrip * 1.5, `one call alone took ${alone.toFixed(1)} ms for a ${roundTrip} ms round trip`)
    assert.ok(sideBySide < roundTrip * 1.5, `with 4 loops in flight a call took ${sideBySide.toFixed(1)} ms at the median, for a ${roundTrip} ms round trip (alone: ${alone.toFixed(1)} ms)`)
  } finally {
    await locks.close()
    await proxy.close()
    await server.stop()
  }
})

// The fault proxy resets connections; one it resets while its end is under way must not keep
// the test process from exiting (Node leaves such a socket's handle open for ever).
test("the fault proxy's reset of a socket that is ending lets the process exit", () => {
  const child = `
    const net = require('node:net')
    const { resetOrDestroy } = require(${JSON.stringify(require.resolve('./helpers/proxy'))})
    const server = net.createServer((socket) => {
      socket.on('error', () => {})
      socket.on('data', () => {
        socket.end()
        process.nextTick(() => resetOrDestroy(socket))
      })
    })
    server.unref()
    server.listen(0, '127.0.0.1', () => {
      const client = net.connect(server.address().port, '127.0.0.1', () => client.write('x'))
      client.on('error', () => {})
      client.on('close', () => server.close())
    })`
  const run = spawnSync(process.execPath, ['-e', child], { timeout: 5000, encoding: 'utf8' })
  assert.equal(run.error?.code, undefined, 'the process did not exit within 5 s')
  assert.equal(run.status, 0, run.stderr)
})
