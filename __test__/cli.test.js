'use strict'

// The relock command's watch and stats, run as a process against a real redis-server.

const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')

const { Redlock } = require('..')
const { RedisServer, sleep } = require('../tools/redis-server')

const cli = path.join(__dirname, '..', 'bin', 'relock.js')
const TOKEN_A = '6f1d2c3b-4a59-4e8f-8c7d-1e2f3a4b5c6d'
const TOKEN_B = '0a9b8c7d-6e5f-4a3b-8c1d-2e3f4a5b6c7d'
const DOWN = 'redis://127.0.0.1:1' // nothing listens there: refused at once

let server
before(async () => {
  server = await RedisServer.start()
})
after(async () => {
  await server.stop()
})

// Runs the command; `onStdout` sees the output so far as it comes. Killed if it runs too long.
function relock(args, { onStdout } = {}) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000, killSignal: 'SIGKILL' })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    stdout += chunk
    if (onStdout) onStdout(stdout, child)
  })
  child.stderr.setEncoding('utf8').on('data', (chunk) => { stderr += chunk })
  const done = new Promise((resolve) => child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr })))
  return Object.assign(done, { child })
}

// One command over a connection opened beforehand, so that a change lands within milliseconds.
async function redisConnection(port) {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return {
    send(...args) {
      socket.write(`*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`)
      return new Promise((resolve) => socket.once('data', (reply) => resolve(reply.toString())))
    },
    close: () => socket.destroy(),
  }
}

const blocksOf = (stdout) => stdout.split(/\n(?=\d{4}-\d\d-\d\dT)/).filter((block) => block.trim())

test('watch shows the holder, its ttl running down, and a change of holder between refreshes', async () => {
  server.cli('SET', 'watch:1', TOKEN_A, 'PX', '60000')
  const redis = await redisConnection(server.port)
  let changed = null
  try {
    const run = await relock(['watch', 'watch:1', '--count', '3', '--interval', '100', '--url', server.url], {
      onStdout: (stdout) => {
        if (!changed && blocksOf(stdout).length >= 1) changed = redis.send('SET', 'watch:1', TOKEN_B, 'PX', '60000')
      },
    })
    assert.equal(await changed, '+OK\r\n')
    assert.equal(run.status, 0, run.stderr)
    const blocks = blocksOf(run.stdout)
    assert.equal(blocks.length, 3, run.stdout)
    assert.match(blocks[0], /^\S+Z {2}watch:1 {2}watching watch:1 every 100 ms\n/)
    assert.match(blocks[0], new RegExp(`${server.url.replace(/\./g, '\\.')}\\s+${TOKEN_A}\\s+\\d+ ms`))
    assert.match(run.stdout, new RegExp(`holder ${TOKEN_A} → ${TOKEN_B}`), 'the change of holder is told')
    assert.match(blocks[2], new RegExp(`${TOKEN_B}\\s+\\d+ ms`))
    assert.match(run.stdout, /\d+Z {2}watch:1 {2}ttl running\n/, 'the ttl runs down between two refreshes of one holder')
    const ttls = blocks.map((block) => Number(/(\d+) ms/.exec(block.split('\n')[3])[1]))
    assert.ok(ttls.every((ttl) => ttl > 50_000 && ttl <= 60_000), `ttls ${ttls}`)
  } finally {
    redis.close()
  }
})

test('watch --json prints one parsable object per refresh', async () => {
  server.cli('SET', 'watch:json', TOKEN_A, 'PX', '60000')
  const run = await relock(['watch', 'watch:json', '--count', '2', '--interval', '50', '--json', '--url', server.url])
  assert.equal(run.status, 0, run.stderr)
  const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line))
  assert.equal(lines.length, 2)
  for (const line of lines) {
    assert.equal(line.key, 'watch:json')
    assert.ok(!Number.isNaN(Date.parse(line.time)), line.time)
    assert.equal(line.hosts.length, 1)
    assert.deepEqual({ ...line.hosts[0], ttl: typeof line.hosts[0].ttl }, { host: server.url, holder: TOKEN_A, ttl: 'number', fence: null, waiters: [], foreign: false, semaphore: false, readers: 0, error: null })
  }
  assert.deepEqual(lines[0].changes, ['watching watch:json every 50 ms'])
  assert.deepEqual(lines[1].changes, ['ttl running'])
  assert.ok(lines[1].hosts[0].ttl < lines[0].hosts[0].ttl)
})

test('watch marks a host that does not answer and keeps going; it exits 1 after its count', async () => {
  server.cli('SET', 'watch:down', TOKEN_A, 'PX', '60000')
  const run = await relock(['watch', 'watch:down', '--count', '2', '--interval', '50', '--url', server.url, '--url', DOWN])
  assert.equal(run.status, 1, run.stderr)
  const blocks = blocksOf(run.stdout)
  assert.equal(blocks.length, 2, run.stdout)
  for (const block of blocks) {
    assert.match(block, new RegExp(`${TOKEN_A}\\s+\\d+ ms`), 'the host that answers is shown')
    assert.match(block, /redis:\/\/127\.0\.0\.1:1 +\(unreachable: ERR_RELOCK_CONNECTION\)/)
  }
  assert.equal(run.stderr.match(/did not answer/g).length, 1, `the failure is named once, not at every refresh: ${run.stderr}`)
})

test('watch without --count runs until SIGINT or SIGTERM, then exits 0', async () => {
  server.cli('SET', 'watch:forever', TOKEN_A, 'PX', '60000')
  for (const signal of ['SIGINT', 'SIGTERM']) {
    let sent = false
    const run = await relock(['watch', 'watch:forever', '--interval', '50', '--url', server.url], {
      onStdout: (stdout, child) => {
        if (!sent && blocksOf(stdout).length >= 2) {
          sent = true
          child.kill(signal)
        }
      },
    })
    assert.ok(sent, run.stdout)
    assert.deepEqual([run.status, run.signal], [0, null], `${signal}: ${run.stderr}`)
  }
})

test('stats counts held keys, keys with fair waiters, waiters, the lowest ttl and the highest fence', async () => {
  server.cli('SET', 'stats:plain:1', TOKEN_A, 'PX', '60000')
  server.cli('SET', 'stats:plain:2', TOKEN_B, 'PX', '60000')
  server.cli('SET', 'stats:data', 'not a lock')
  const clients = [0, 1, 2].map(() => new Redlock(server.url))
  const [owner, ...others] = clients
  try {
    const held = await owner.acquire('stats:fair', { fair: true, ttl: 5000 })
    // Each waiter lets go as soon as its turn comes, so that the next one's comes too.
    const waits = others.map((client) => client.acquire('stats:fair', { fair: true, ttl: 5000, waitTimeout: 3000 }).then((lock) => lock.release()))
    for (let i = 0; (await owner.inspect('stats:fair'))[0].waiters.length < 2; i++) {
      assert.ok(i < 100, 'the waiters did not queue')
      await sleep(20)
    }
    const json = await relock(['stats', 'stats:*', '--json', '--url', server.url])
    assert.equal(json.status, 0, json.stderr)
    const summary = JSON.parse(json.stdout)
    assert.equal(summary.pattern, 'stats:*')
    assert.equal(summary.keys, 3, 'the key that is not a lock is left out')
    assert.equal(summary.limitReached, false)
    const [host] = summary.hosts
    assert.equal(summary.hosts.length, 1)
    assert.deepEqual({ ...host, lowestTtl: undefined }, {
      host: server.url, held: 3, withWaiters: 1, waiters: 2, lowestTtl: undefined, lowestTtlKey: 'stats:fair', highestFence: held.fence, highestFenceKey: 'stats:fair', error: null,
    })
    assert.ok(host.lowestTtl > 0 && host.lowestTtl <= 5000, `lowest ttl ${host.lowestTtl}`)

    const text = await relock(['stats', 'stats:*', '--url', server.url])
    assert.equal(text.status, 0, text.stderr)
    assert.match(text.stdout, /^3 lock keys match stats:\*\n/)
    assert.match(text.stdout, new RegExp(`${server.url.replace(/\./g, '\\.')} +3 +1 +2 +\\d+ ms \\(stats:fair\\) +${held.fence} \\(stats:fair\\)`))

    const limited = JSON.parse((await relock(['stats', 'stats:*', '--limit', '2', '--json', '--url', server.url])).stdout)
    assert.deepEqual([limited.keys, limited.limitReached], [2, true])

    await held.release()
    assert.deepEqual(await Promise.all(waits), [true, true])
  } finally {
    await Promise.all(clients.map((client) => client.close()))
  }
})

test('stats marks a host that does not answer and exits 1; no matching key is a zero summary', async () => {
  server.cli('SET', 'stats-down:1', TOKEN_A, 'PX', '60000')
  const run = await relock(['stats', 'stats-down:*', '--url', server.url, '--url', DOWN])
  assert.equal(run.status, 1, run.stderr)
  assert.match(run.stdout, new RegExp(`${server.url.replace(/\./g, '\\.')} +1 +0 +0 +\\d+ ms \\(stats-down:1\\) +-`))
  assert.match(run.stdout, /redis:\/\/127\.0\.0\.1:1 +\(unreachable: ERR_RELOCK_CONNECTION\)/)
  assert.match(run.stderr, /redis:\/\/127\.0\.0\.1:1 did not answer/)
  const none = await relock(['stats', 'nothing-here:*', '--json', '--url', server.url])
  assert.equal(none.status, 0, none.stderr)
  assert.deepEqual(JSON.parse(none.stdout).hosts.map((h) => [h.held, h.waiters, h.lowestTtl, h.highestFence]), [[0, 0, null, null]])
})

test('rwlock and semaphore show readers, waiting writers, holders and permits', async () => {
  const locks = new Redlock(server.url)
  const reader = await locks.rwlock('cli:doc').read()
  const writer = locks.rwlock('cli:doc').write({ waitTimeout: 5000 })
  const permits = await locks.semaphore('cli:pool', { permits: 4 }).acquire({ permits: 3 })
  await sleep(100)
  const rw = await relock(['rwlock', 'cli:doc', '--url', server.url])
  assert.equal(rw.status, 0, rw.stderr)
  assert.match(rw.stdout, /writer: \(none\)/)
  assert.match(rw.stdout, /readers: 1/)
  assert.match(rw.stdout, /waiting writers: 1/)
  assert.ok(rw.stdout.includes(reader.token))
  const semaphore = await relock(['semaphore', 'cli:pool', '--url', server.url, '--json'])
  assert.equal(semaphore.status, 0, semaphore.stderr)
  const state = JSON.parse(semaphore.stdout)
  assert.equal(state.inUse, 3)
  assert.deepEqual(state.holders.map((holder) => [holder.token, holder.permits]), [[permits.token, 3]])
  await reader.release()
  const written = await writer
  const after = await relock(['rwlock', 'cli:doc', '--url', server.url])
  assert.ok(after.stdout.includes(`writer: ${written.token}`), after.stdout)
  await Promise.all([written.release(), permits.release()])
  await locks.close()
  const missing = await relock(['semaphore', '--url', server.url])
  assert.equal(missing.status, 2)
})

test('bad flags of watch and stats are usage errors: exit 2 with the usage text', () => {
  const cases = [
    [['watch', 'k', '--interval', '49'], /--interval must be a whole number from 50 to 60000, got "49"/],
    [['watch', 'k', '--interval', '60001'], /--interval/],
    [['watch', 'k', '--interval', 'fast'], /--interval/],
    [['watch', 'k', '--interval'], /--interval .*got nothing/],
    [['watch', 'k', '--count', '0'], /--count must be a whole number 1 or more, got "0"/],
    [['watch', 'k', '--count', '1.5'], /--count/],
    [['watch', 'k', '--count', ''], /--count/],
    [['watch', 'k', '--every', '100'], /unknown option --every/],
    [['watch'], /watch needs a key/],
    [['stats', '--interval', '100'], /--interval is an option of watch/],
    [['inspect', 'k', '--count', '3'], /--count is an option of watch/],
    [['stats', '--limit', '0'], /--limit/],
    [['stats', '--verbose'], /unknown option --verbose/],
  ]
  for (const [args, message] of cases) {
    const run = spawnSync(process.execPath, [cli, '--url', DOWN, ...args], { encoding: 'utf8', timeout: 10_000 })
    assert.equal(run.status, 2, `${args.join(' ')}: ${run.stderr}`)
    assert.match(run.stderr, message, args.join(' '))
    assert.match(run.stderr, /usage: relock <command>[\s\S]*watch <key>[\s\S]*stats \[pattern\]/, args.join(' '))
    assert.equal(run.stdout, '')
  }
  const help = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' })
  assert.equal(help.status, 0)
  assert.match(help.stdout, /--interval MS[\s\S]*--count N/)
})
