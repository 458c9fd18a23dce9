'use strict'

// Scenario 4: contention across processes. Several forked workers increment one counter under
// one lock, with blocking acquires; the merged timelines tell how the lock was handed around.

const { fork } = require('node:child_process')
const path = require('node:path')
const Redis = require('ioredis')
const { percentileOfSorted, sortedCopy } = require('../lib/stats')
const { runRounds } = require('../lib/rounds')

const WORKER_SCRIPT = path.join(__dirname, '..', 'contention-worker.js')
const WAIT_BUDGET_MS = 60000
// A run that takes longer than this has hung: its workers are killed and the run fails.
const RUN_DEADLINE_MS = 5 * 60000

function forkWorker(setup, running) {
  const child = fork(WORKER_SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  running.add(child)
  child.once('exit', () => running.delete(child))
  child.send(setup)
  return child
}

function nextMessage(child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type === type) resolve(message)
      else if (message.type === 'failed') reject(new Error(`worker failed: ${message.error}`))
    }
    child.on('message', onMessage)
    child.once('exit', (code) => reject(new Error(`worker exited with code ${code} before '${type}'`)))
  })
}

function withDeadline(promise, ms, what) {
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000} s`)), ms)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

// Forks the workers, waits until all are connected, starts them together, and collects their
// reports. Workers still alive afterwards (a failed run) are killed.
async function runWorkers(setups, runningWorkers) {
  const children = setups.map((setup) => forkWorker(setup, runningWorkers))
  try {
    const reports = children.map((child) => nextMessage(child, 'done'))
    reports.forEach((report) => report.catch(() => {})) // awaited below, after 'ready'
    await Promise.all(children.map((child) => nextMessage(child, 'ready')))
    for (const child of children) child.send('go')
    return await withDeadline(Promise.all(reports), RUN_DEADLINE_MS, 'the contention run')
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  }
}

// Who had been waiting longest when each acquisition happened? A waiter is waiting at time t if
// its wait began at or before t and its acquisition came at or after t. Contended acquisitions
// are those made while at least one other worker was waiting too.
function fifoShares(acquisitions) {
  let fifo = 0
  let contended = 0
  let fifoContended = 0
  for (const acquisition of acquisitions) {
    const waiting = acquisitions.filter((other) => other.waitStart <= acquisition.acquiredAt && other.acquiredAt >= acquisition.acquiredAt)
    const longestWaiting = waiting.every((other) => other.waitStart >= acquisition.waitStart)
    if (longestWaiting) fifo++
    if (waiting.length > 1) {
      contended++
      if (longestWaiting) fifoContended++
    }
  }
  return {
    fifoShare: acquisitions.length ? fifo / acquisitions.length : NaN,
    fifoShareContended: contended ? fifoContended / contended : NaN,
    contendedShare: acquisitions.length ? contended / acquisitions.length : NaN,
  }
}

function ownerChanges(acquisitions) {
  let changes = 0
  for (let i = 1; i < acquisitions.length; i++) {
    if (acquisitions[i].worker !== acquisitions[i - 1].worker) changes++
  }
  return changes
}

// How many acquisitions each worker had made when the first worker finished: with a fair lock
// they are about even; a lock that favours whoever just released it lets one worker run ahead.
function countsAtFirstFinish(reports) {
  const firstFinish = Math.min(...reports.map((report) => report.finishedAt))
  return reports.map((report) => report.acquisitions.filter(([, acquiredAt]) => acquiredAt <= firstFinish).length)
}

function analyzeRun(reports, finalCounter) {
  const errors = reports.map((report) => report.error).filter(Boolean)
  if (errors.length) throw new Error(`${errors.length} worker(s) failed: ${errors[0]}`)
  const acquisitions = reports
    .flatMap((report, worker) => report.acquisitions.map(([waitStart, acquiredAt]) => ({ worker, waitStart, acquiredAt })))
    .sort((a, b) => a.acquiredAt - b.acquiredAt)
  const waits = sortedCopy(acquisitions.map((acquisition) => acquisition.acquiredAt - acquisition.waitStart))
  const totalMs = Math.max(...reports.map((report) => report.finishedAt)) - Math.min(...reports.map((report) => report.startedAt))
  const increments = reports.reduce((sum, report) => sum + report.increments, 0)
  const counts = countsAtFirstFinish(reports)
  const changes = ownerChanges(acquisitions)
  return {
    totalMs,
    acquisitionsPerSecond: (acquisitions.length / totalMs) * 1000,
    ownerChanges: changes,
    ownerChangeShare: changes / Math.max(1, acquisitions.length - 1),
    waitP50Ms: percentileOfSorted(waits, 0.5),
    waitP99Ms: percentileOfSorted(waits, 0.99),
    waitMaxMs: waits[waits.length - 1],
    lostUpdates: increments - finalCounter,
    ...fifoShares(acquisitions),
    balance: Math.min(...counts) / Math.max(...counts),
    perWorkerCounts: reports.map((report) => report.acquisitions.length),
    perWorkerCountsAtFirstFinish: counts,
  }
}

async function measureContention(variant, { host, workers, iterations, runningWorkers, runId }) {
  const admin = new Redis(host.url)
  const lockKey = `bench:s4:${runId}:lock`
  const counterKey = `bench:s4:${runId}:counter`
  try {
    await admin.set(counterKey, '0')
    const setups = Array.from({ length: workers }, (_, workerIndex) => ({
      variantId: variant.id, urls: [host.url], lockKey, counterKey, iterations, waitMs: WAIT_BUDGET_MS, workerIndex,
    }))
    const reports = await runWorkers(setups, runningWorkers)
    return analyzeRun(reports, Number(await admin.get(counterKey)))
  } finally {
    await admin.flushall()
    admin.disconnect()
  }
}

async function runContention({ host, variants, rounds, workers, iterations, runningWorkers }) {
  const contenders = variants
    .filter((variant) => variant.contention)
    .map((variant) => ({ name: variant.id, isRelock: variant.isRelock, variant }))
  let runId = 0
  const rows = await runRounds({
    label: 'scenario 4 (contention)',
    contenders,
    rounds,
    measure: (contender) => measureContention(contender.variant, { host, workers, iterations, runningWorkers, runId: runId++ }),
  })
  return { id: 's4', title: `Contention: ${workers} processes × ${iterations} increments of one counter under one key`, workers, iterations, rows }
}

module.exports = { runContention, analyzeRun }
