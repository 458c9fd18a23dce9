'use strict'

// Scenario 5: the ceiling. What Redis itself does on this machine (redis-benchmark, a C client),
// and the most a Node client can get out of the lock protocol: ioredis pipelining batches of
// `SET key token NX PX` + compare-and-delete EVALSHA pairs on fresh keys, with no waiting for
// one answer before sending the next command. A few batches are kept in flight, so that Node
// builds the next batch while Redis runs the previous one.

const { execFile } = require('node:child_process')
const { promisify } = require('node:util')
const crypto = require('node:crypto')
const Redis = require('ioredis')
const { COMPARE_AND_DELETE_LUA, LOCK_TTL_MS } = require('../lib/libraries')
const { runRounds } = require('../lib/rounds')

const run = promisify(execFile)
const PAIRS_PER_PIPELINE = 64
const PIPELINES_IN_FLIGHT = 4
const TRIVIAL_SCRIPT = 'return 1'

// redis-benchmark in CSV form (-q alone prints progress with carriage returns): the header line,
// then one line per test with its requests per second and latency percentiles.
async function redisBenchmark(port, requests, clients, command) {
  const { stdout } = await run('redis-benchmark', ['-p', String(port), '-q', '--csv', '-n', String(requests), '-c', String(clients), ...command])
  const [header, values] = stdout.trim().split('\n').slice(-2).map((line) => JSON.parse(`[${line}]`))
  const column = (name) => Number(values[header.indexOf(name)])
  return { opsPerSecond: column('rps'), p50Us: column('p50_latency_ms') * 1000, p99Us: column('p99_latency_ms') * 1000 }
}

async function ioredisPipelined(url, durationMs, warmupMs) {
  const client = new Redis(url)
  try {
    const sha = await client.script('LOAD', COMPARE_AND_DELETE_LUA)
    let sequence = 0
    let pairs = 0
    const sendBatches = async (until) => {
      while (performance.now() < until) {
        const pipeline = client.pipeline()
        for (let i = 0; i < PAIRS_PER_PIPELINE; i++) {
          const key = `bench:s5:${sequence++}`
          const token = crypto.randomUUID()
          pipeline.set(key, token, 'PX', LOCK_TTL_MS, 'NX')
          pipeline.evalsha(sha, 1, key, token)
        }
        await pipeline.exec()
        pairs += PAIRS_PER_PIPELINE
      }
    }
    const runFor = (ms) => {
      const until = performance.now() + ms
      return Promise.all(Array.from({ length: PIPELINES_IN_FLIGHT }, () => sendBatches(until)))
    }
    await runFor(warmupMs)
    pairs = 0
    const start = performance.now()
    await runFor(durationMs)
    return { opsPerSecond: (pairs / (performance.now() - start)) * 1000 }
  } finally {
    client.disconnect()
  }
}

async function runCeiling({ host, rounds, requests, durationMs, warmupMs }) {
  const admin = new Redis(host.url)
  const trivialSha = await admin.script('LOAD', TRIVIAL_SCRIPT)
  admin.disconnect()
  const benchmark = (clients, command) => () => redisBenchmark(host.port, requests, clients, command)
  const contenders = [
    { name: 'redis-benchmark SET, 1 connection', measure: benchmark(1, ['-t', 'set']) },
    { name: 'redis-benchmark SET, 64 connections', measure: benchmark(64, ['-t', 'set']) },
    { name: `redis-benchmark EVALSHA '${TRIVIAL_SCRIPT}', 1 connection`, measure: benchmark(1, ['EVALSHA', trivialSha, '0']) },
    { name: `redis-benchmark EVALSHA '${TRIVIAL_SCRIPT}', 64 connections`, measure: benchmark(64, ['EVALSHA', trivialSha, '0']) },
    { name: `ioredis pipelined SET NX PX + compare-and-delete EVALSHA pairs (${PAIRS_PER_PIPELINE} per pipeline, ${PIPELINES_IN_FLIGHT} in flight)`, isPipelinedCeiling: true, measure: () => ioredisPipelined(host.url, durationMs, warmupMs) },
  ]
  const rows = await runRounds({ label: 'scenario 5 (ceiling)', contenders, rounds, measure: (contender) => contender.measure() })
  rows.forEach((row, index) => { row.isPipelinedCeiling = Boolean(contenders[index].isPipelinedCeiling) })
  return { id: 's5', title: 'Ceiling: Redis itself and ioredis pipelining', requests, rows }
}

module.exports = { runCeiling }
